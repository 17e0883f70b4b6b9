"""Looks at a broker's TLS listener with Python's ssl module.

Usage:
  tls_peer.py subject HOST:PORT CA_FILE
      a new connection: prints the subject of the certificate the broker
      served (verified against CA_FILE) as JSON.
  tls_peer.py hold HOST:PORT CA_FILE READY_FILE GO_FILE
      opens one connection and sends ApiVersions, writes READY_FILE, waits
      (bounded) for GO_FILE to exist, then sends ApiVersions again on the
      same connection: an established session must outlive a certificate
      rotation.
"""

import json
import os
import socket
import ssl
import struct
import sys

from common import Deadline, check_eq, emit, fail


def connect(addr, ca):
    host, port = addr.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    raw = socket.create_connection((host, int(port)), timeout=10)
    return ctx.wrap_socket(raw, server_hostname=host)


def subject_of(sock):
    cert = sock.getpeercert()
    return ",".join(f"{k}={v}" for rdn in cert["subject"] for (k, v) in rdn)


def api_versions(sock, correlation):
    # Request header v1 (ApiVersions v0): api key 18, version 0, correlation id, null client id.
    body = struct.pack(">hhih", 18, 0, correlation, -1)
    sock.sendall(struct.pack(">i", len(body)) + body)
    size = struct.unpack(">i", recv_exact(sock, 4))[0]
    answer = recv_exact(sock, size)
    got_correlation, error = struct.unpack(">ih", answer[:6])
    check_eq(got_correlation, correlation, "correlation id")
    check_eq(error, 0, "ApiVersions error code")


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            fail("connection closed")
        data += chunk
    return data


def main():
    mode, addr, ca = sys.argv[1], sys.argv[2], sys.argv[3]
    sock = connect(addr, ca)
    if mode == "subject":
        emit({"subject": subject_of(sock)})
        return
    ready, go = sys.argv[4], sys.argv[5]
    first = subject_of(sock)
    api_versions(sock, 1)
    open(ready, "w").close()
    deadline = Deadline(90)
    while not os.path.exists(go):
        if deadline.expired():
            fail("GO_FILE never appeared")
        deadline_sleep = min(0.2, deadline.left())
        import time

        time.sleep(deadline_sleep)
    api_versions(sock, 2)
    emit({"subject": first, "still_served": True})


if __name__ == "__main__":
    main()
