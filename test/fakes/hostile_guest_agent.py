#!/usr/bin/env python3
"""hostile_guest_agent: a guest agent that misbehaves, for emberd's tests (the
Firecracker fake runs it in place of ember_guest_agent: EMBER_FAKE_GUEST_AGENT).

Usage: hostile_guest_agent.py --listen PATH
Each accepted connection reads the mode from the file named by
EMBER_HOSTILE_MODE_FILE (so one emberd sees several behaviours in turn):
  silent         reads everything, never answers
  garbage        answers every read with random bytes
  ack-garbage    answers HELLO properly, then sends random bytes after any frame
  ack-huge       answers HELLO, then a frame header claiming 4 GiB
  ack-stall      answers HELLO, then never reads or answers again
  ack-flood      answers HELLO, then STARTED and 2 MiB of STDOUT on every
                 channel the host opens, ignoring the window (a protocol violation)
"""
import os
import socket
import struct
import sys
import threading
import time

MAGIC = 0x41474D45
HELLO, HELLO_ACK, STARTED, STDOUT = 1, 2, 11, 14
R_VERSION, R_NONCE, R_AGENT, R_PID = 1, 2, 3, 17


def rec(tag, value):
    return struct.pack("<HHI", tag, 0, len(value)) + value


def frame(typ, ch, payload=b""):
    return struct.pack("<IBBHII", MAGIC, typ, 0, 0, ch, len(payload)) + payload


def read_frame(s, buf):
    while True:
        i = buf.find(struct.pack("<I", MAGIC))
        if i > 0:
            buf = buf[i:]
        if i == 0 and len(buf) >= 16:
            _, typ, _, _, ch, n = struct.unpack_from("<IBBHII", buf)
            if len(buf) >= 16 + n:
                return typ, ch, buf[16:16 + n], buf[16 + n:]
        data = s.recv(65536)
        if not data:
            raise EOFError
        buf += data


def records(p):
    out, pos = {}, 0
    while pos + 8 <= len(p):
        tag, _, n = struct.unpack_from("<HHI", p, pos)
        out[tag] = p[pos + 8:pos + 8 + n]
        pos += 8 + n
    return out


def ack(s):
    buf = b""
    while True:
        typ, _, p, buf = read_frame(s, buf)
        if typ == HELLO:
            nonce = records(p).get(R_NONCE, b"\0" * 8)
            s.sendall(frame(HELLO_ACK, 0, rec(R_VERSION, struct.pack("<I", 1)) +
                            rec(R_NONCE, nonce) + rec(R_AGENT, b"hostile")))
            return buf


def serve(s, mode):
    try:
        if mode == "silent":
            while s.recv(65536):
                pass
        elif mode == "garbage":
            while s.recv(65536):
                s.sendall(os.urandom(4096))
        elif mode == "ack-garbage":
            buf = ack(s)
            read_frame(s, buf)
            s.sendall(os.urandom(8192))
            while s.recv(65536):
                pass
        elif mode == "ack-huge":
            buf = ack(s)
            read_frame(s, buf)
            s.sendall(struct.pack("<IBBHII", MAGIC, STDOUT, 0, 0, 1, 0xFFFFFFF0))
            while s.recv(65536):
                pass
        elif mode == "ack-stall":
            ack(s)
            time.sleep(3600)
        elif mode == "ack-flood":
            buf = ack(s)
            while True:
                typ, ch, _, buf = read_frame(s, buf)
                if ch != 0:
                    s.sendall(frame(STARTED, ch, rec(R_PID, struct.pack("<I", 4242))))
                    for _ in range(64):  # 2 MiB, far past the 256 KiB window
                        s.sendall(frame(STDOUT, ch, b"x" * 32768))
    except (EOFError, OSError):
        pass
    finally:
        s.close()


def main():
    if len(sys.argv) != 3 or sys.argv[1] != "--listen":
        print("usage: hostile_guest_agent.py --listen PATH", file=sys.stderr)
        return 2
    mode_file = os.environ.get("EMBER_HOSTILE_MODE_FILE", "")
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(sys.argv[2])
    ls.listen(8)
    while True:
        c, _ = ls.accept()
        try:
            with open(mode_file) as f:
                mode = f.read().strip()
        except OSError:
            mode = "silent"
        threading.Thread(target=serve, args=(c, mode), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
