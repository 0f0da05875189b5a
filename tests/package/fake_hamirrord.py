#!/usr/bin/python3
# A stand-in for hamirrord under the packaged unit (unit_systemd_test.sh): what matters to the unit is
# how hamirrord answers systemd. READY=1 on $NOTIFY_SOCKET once its "module" runs: a detached child (own
# session, like hamirror-fs and the database) that it starts, or adopts when its pid file names a live
# one. SIGUSR2: exit, the child left running. SIGTERM: stop the child, then exit. Every step is appended
# to /run/hmtest/events.
import os
import signal
import socket
import time

STATE = "/run/hmtest"
PIDFILE = STATE + "/module.pid"
os.makedirs(STATE, exist_ok=True)


def record(line):
    with open(STATE + "/events", "a") as f:
        f.write(line + "\n")


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


child = None
if os.path.exists(PIDFILE):
    pid = int(open(PIDFILE).read())
    if alive(pid):
        child = pid
        record("adopted %d" % child)
if child is None:
    child = os.fork()
    if child == 0:
        os.setsid()
        os.execv("/bin/sleep", ["sleep", "3600"])
    open(PIDFILE, "w").write(str(child))
    record("started %d" % child)


def on_usr2(signum, frame):
    record("USR2")
    os._exit(0)


def on_term(signum, frame):
    record("TERM")
    os.kill(child, signal.SIGTERM)
    os.remove(PIDFILE)
    os._exit(0)


signal.signal(signal.SIGUSR2, on_usr2)
signal.signal(signal.SIGTERM, on_term)
address = os.environ["NOTIFY_SOCKET"]
if address.startswith("@"):
    address = "\0" + address[1:]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.connect(address)
sock.send(b"READY=1")
record("ready %d" % os.getpid())
for _ in range(3600):
    time.sleep(1)
