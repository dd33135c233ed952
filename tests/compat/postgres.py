"""PostgreSQL: initdb, start, queries through psql, clean stop, as an unprivileged
user (postgres refuses to run as root). Needs System V IPC and /dev/shm."""
import os
import subprocess
import sys

BIN = "/usr/lib/postgresql/15/bin"
DATA, SOCK, UID = "/tmp/pg", "/tmp", 65534


def run(*argv, **kw):
    return subprocess.run(argv, check=True, **kw)


os.makedirs(DATA, mode=0o700)
os.chown(DATA, UID, UID)
pid = os.fork()
if pid == 0:
    os.setgid(UID)
    os.setuid(UID)
    os.environ.update(HOME="/tmp", LC_ALL="C", TZ="UTC")
    try:
        run(f"{BIN}/initdb", "-D", DATA, "-U", "postgres", "--locale=C", "-E", "UTF8", "--no-sync", "--auth=trust",
            stdout=subprocess.DEVNULL)
        run(f"{BIN}/pg_ctl", "-D", DATA, "-l", "/tmp/pg.log", "-w", "-t", "300", "-o",
            f"-k {SOCK} -c listen_addresses='' -c fsync=off", "start", stdout=subprocess.DEVNULL)
        sql = ("create table t(id int primary key, v text);\n"
               "insert into t select g, md5(g::text) from generate_series(1, 1000) g;\n"
               "begin; update t set v = 'x' where id % 2 = 0; rollback;\n"
               "select count(*), count(distinct v) from t;\n")
        q = run(f"{BIN}/psql", "-h", SOCK, "-U", "postgres", "-At", "-v", "ON_ERROR_STOP=1", "-f", "-",
                input=sql, capture_output=True, text=True)
        print("psql:", q.stdout.strip().splitlines()[-1], flush=True)
        run(f"{BIN}/pg_ctl", "-D", DATA, "-m", "fast", "-w", "stop", stdout=subprocess.DEVNULL)
        print("stopped", flush=True)
        os._exit(0)
    except subprocess.CalledProcessError as e:
        print(f"failed: {e}", file=sys.stderr)
        if os.path.exists("/tmp/pg.log"):
            sys.stderr.write(open("/tmp/pg.log").read()[-3000:])
        os._exit(1)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
