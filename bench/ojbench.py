"""Helpers the bench scripts' python parts share (imported with the bench
directory on sys.path): talking HTTP/1.1 to a daemon's Unix socket."""
import json
import socket

JOB = json.dumps({"name": "t", "steps": [{"name": "s", "run": "true"}]}).encode()
SUBMIT = (b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
          b"Content-Length: " + str(len(JOB)).encode() + b"\r\n\r\n" + JOB)


def submit(sock_path, n):
    """Submits n one-step `true` jobs one after another on one keep-alive
    connection, each after the previous one's answer."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    f = s.makefile("rb")
    for _ in range(n):
        s.sendall(SUBMIT)
        length = 0
        while (line := f.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        f.read(length)
    s.close()


def idle(sock_path):
    """Whether nothing is queued or running, from GET /v1/status: cheap
    enough to ask every few milliseconds."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    s.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    jobs = json.loads(data.split(b"\r\n\r\n", 1)[1])["jobs"]
    return jobs["queued"] == 0 and jobs["running"] == 0
