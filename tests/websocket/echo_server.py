"""A WebSocket echo server for the end-to-end tests (RFC 6455, small text frames).

Usage: echo_server.py [PORT]  (default 8765). Each text frame comes back as it was sent.
"""
import base64, hashlib, socket, sys, threading
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
def read(conn, buf, n):
    while len(buf) < n:
        chunk = conn.recv(4096)
        if not chunk:
            raise EOFError
        buf += chunk
    return buf[:n], buf[n:]
def serve(conn):
    try:
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(4096)
            if not chunk:
                return
            buf += chunk
        head, buf = buf.split(b"\r\n\r\n", 1)
        key = [l.split(b":", 1)[1].strip() for l in head.split(b"\r\n") if l.lower().startswith(b"sec-websocket-key:")][0]
        accept = base64.b64encode(hashlib.sha1(key + GUID.encode()).digest())
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        while True:
            hdr, buf = read(conn, buf, 2)
            n = hdr[1] & 0x7F
            mask, buf = read(conn, buf, 4)
            data, buf = read(conn, buf, n)
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            if hdr[0] & 0x0F == 8:
                return
            conn.sendall(bytes([0x80 | (hdr[0] & 0x0F), len(payload)]) + payload)
    except (EOFError, OSError, IndexError):
        pass
    finally:
        conn.close()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]) if len(sys.argv) > 1 else 8765))
s.listen(16)
while True:
    conn, _ = s.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
