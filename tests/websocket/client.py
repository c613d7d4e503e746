"""A WebSocket client for the end-to-end tests: opens `PATH` on HOST:PORT with `Host: HOST_HEADER`,
checks the handshake, sends MESSAGE as one masked text frame and prints the echo.

Usage: client.py HOST PORT PATH HOST_HEADER MESSAGE
"""
import base64, hashlib, os, socket, sys
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
host, port, path, host_header, message = sys.argv[1:6]
s = socket.create_connection((host, int(port)), timeout=5)
key = base64.b64encode(os.urandom(16))
s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: " + host_header.encode() + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
buf = b""
while b"\r\n\r\n" not in buf:
    chunk = s.recv(4096)
    if not chunk:
        sys.exit("closed during the handshake: %r" % buf)
    buf += chunk
head, buf = buf.split(b"\r\n\r\n", 1)
if not head.startswith(b"HTTP/1.1 101"):
    sys.exit("no upgrade: %r" % head)
want = base64.b64encode(hashlib.sha1(key + GUID.encode()).digest())
if want not in head:
    sys.exit("wrong Sec-WebSocket-Accept: %r" % head)
msg = message.encode()
mask = os.urandom(4)
s.sendall(bytes([0x81, 0x80 | len(msg)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(msg)))
while len(buf) < 2 or len(buf) < 2 + (buf[1] & 0x7F):
    chunk = s.recv(4096)
    if not chunk:
        sys.exit("closed before the echo: %r" % buf)
    buf += chunk
print(buf[2:2 + (buf[1] & 0x7F)].decode())
