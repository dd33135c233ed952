#!/bin/sh
# Runs http-echo.vm (its manifest publishes 127.0.0.1:8080 -> guest 8080),
# polls until the server answers one GET and one POST, then stops the VM.
# Used by demo/run.sh, on this host or inside the KVM lab.
image=$1
"$image" &
vm=$!
answered=
for _ in $(seq 150); do
	if reply=$(busybox wget -q -T 2 -O - http://127.0.0.1:8080/ 2>/dev/null); then
		answered=1
		break
	fi
	kill -0 "$vm" 2>/dev/null || break
	sleep 0.2
done
if [ -n "$answered" ]; then
	echo "GET  http://127.0.0.1:8080/ -> $reply"
	echo "POST http://127.0.0.1:8080/ -> $(busybox wget -q -O - --post-data 'echo me' http://127.0.0.1:8080/)"
fi
kill "$vm" 2>/dev/null
wait "$vm"
[ -n "$answered" ] || { echo "http-echo.vm did not answer" >&2; exit 1; }
