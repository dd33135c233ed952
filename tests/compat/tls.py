"""openssl: a self-signed key and certificate, then a verified TLS 1.3 handshake
between `s_server` and `s_client` over 127.0.0.1."""
import subprocess
import sys
import time

import guest

guest.lo_up()
subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", "/tmp/key.pem", "-out", "/tmp/cert.pem", "-subj", "/CN=localhost", "-days", "1"],
               check=True, stderr=subprocess.DEVNULL)
server = subprocess.Popen(["openssl", "s_server", "-accept", "127.0.0.1:4433", "-cert", "/tmp/cert.pem",
                           "-key", "/tmp/key.pem", "-naccept", "1", "-quiet"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for _ in range(600):
    client = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:4433", "-CAfile", "/tmp/cert.pem",
                             "-verify_return_error", "-brief", "-tls1_3"],
                            input=b"hello over tls\n", capture_output=True)
    if client.returncode == 0:
        break
    time.sleep(0.1)
wanted = ("CONNECTION ESTABLISHED", "Protocol version", "Verification")
for line in client.stderr.decode(errors="replace").splitlines():
    if line.startswith(wanted):
        print(line)
server.wait(timeout=60)
sys.exit(client.returncode or server.returncode)
