#!/bin/sh
# Runs http-echo.vm (its manifest publishes 127.0.0.1:8080 -> guest 8080),
# polls until the server answers a GET, sends a POST, then stops the VM.
# Used by demo/run.sh, on this host or inside the KVM lab. The client is
# busybox nc (HTTP/1.0, the body is the last line of the answer).
image=$1
"$image" &
vm=$!
request() { printf '%s\r\n\r\n%s' "$1" "$2" | busybox nc 127.0.0.1 8080 2>/dev/null | tail -n 1; }
answered=
for _ in $(seq 300); do
	reply=$(request 'GET / HTTP/1.0')
	if [ -n "$reply" ]; then
		answered=1
		break
	fi
	kill -0 "$vm" 2>/dev/null || break
	sleep 0.2
done
if [ -n "$answered" ]; then
	echo "GET  http://127.0.0.1:8080/ -> $reply"
	echo "POST http://127.0.0.1:8080/ -> $(request "$(printf 'POST / HTTP/1.0\r\nContent-Length: 7')" 'echo me')"
fi
kill "$vm" 2>/dev/null
wait "$vm"
[ -n "$answered" ] || { echo "http-echo.vm did not answer" >&2; exit 1; }
