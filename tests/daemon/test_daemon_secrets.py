"""Secrets kept by a real daemon: they reach nodes through `env:` only, and their values
appear nowhere the daemon writes or answers (database files, its log, any API answer)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from tests.conftest import RunTead
from tests.daemon_fixture import DaemonProcess

Factory = Callable[..., DaemonProcess]

FILE_SECRET = "hunter2-file-secret-value"
ENV_SECRET = "tok-Env-Secret-ABC123"

SECRETS_WORKFLOW = """\
name: uses-secrets
env:
  API_TOKEN: {secret: api_token}
  DB_PASS: {secret: db_pass}
  PLAIN: visible
nodes:
  - name: use
    run: |
      import hashlib, os
      token, password = os.environ["API_TOKEN"], os.environ["DB_PASS"]
      print("token is", token, "and the password is", password)
      return {
          "token_sha": hashlib.sha256(token.encode()).hexdigest(),
          "pass_sha": hashlib.sha256(password.encode()).hexdigest(),
          "leaked": [token, {"key": password}, f"in a sentence: {password}!"],
          "plain": os.environ["PLAIN"],
          "items": [token, password],
      }
  - name: spread
    run: |
      return None
edges:
  - {from: __start__, to: use}
  - {from: use, to: branch, parallel: true, for_each: "state['items']", item_var: it,
     fan_in: spread}
  - {from: branch, to: spread}
  - {from: spread, to: __end__}
"""

BRANCH_NODE = """\
  - name: branch
    run: |
      return {"seen": state["it"]}
"""

FAILING_WORKFLOW = """\
name: fails-with-secret
env:
  DB_PASS: {secret: db_pass}
nodes:
  - name: boom
    run: |
      import os
      raise ValueError("cannot connect with " + os.environ["DB_PASS"])
"""


def _daemon_with_secrets(daemon_factory: Factory) -> DaemonProcess:
    daemon = daemon_factory(env={"TEAD_SECRET_API_TOKEN": ENV_SECRET})
    folder = daemon.state_dir / "secrets"
    folder.mkdir(parents=True, mode=0o700)
    os.chmod(daemon.state_dir, 0o700)
    secret = folder / "db_pass"
    secret.write_text(FILE_SECRET + "\n")
    os.chmod(secret, 0o600)
    text = SECRETS_WORKFLOW.replace("  - name: spread\n", BRANCH_NODE + "  - name: spread\n")
    daemon.write("secrets.yaml", text)
    daemon.write("fails.yaml", FAILING_WORKFLOW)
    return daemon.start()


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def test_secrets_reach_nodes_and_are_masked_everywhere(daemon_factory: Factory) -> None:
    """A file secret and a TEAD_SECRET_ variable reach the node through `env:`; the run's
    final state, branch results, error, output log lines, database files and every API
    answer show `***` instead of their values."""
    daemon = _daemon_with_secrets(daemon_factory)
    run = daemon.wait_run(daemon.dispatch("uses-secrets")["id"])
    assert run["status"] == "succeeded", run
    final = run["final_state"]
    assert final["token_sha"] == _sha(ENV_SECRET)  # the node saw the real values
    assert final["pass_sha"] == _sha(FILE_SECRET)
    assert final["leaked"] == ["***", {"key": "***"}, "in a sentence: ***!"]
    assert final["plain"] == "visible"
    assert [b["state"]["seen"] for b in run["branches"]] == ["***", "***"]
    failed = daemon.wait_run(daemon.dispatch("fails-with-secret")["id"])
    assert failed["status"] == "failed"
    assert "cannot connect with ***" in failed["error"], failed["error"]

    logs_path = f"/api/v1/runs/{run['id']}/logs"
    said = "token is *** and the password is ***"
    daemon.wait_for(lambda: said in daemon.get(logs_path).text, what="log")
    answers = [
        daemon.get(path).text
        for path in (
            "/api/v1/runs",
            f"/api/v1/runs/{run['id']}",
            f"/api/v1/runs/{run['id']}/logs",
            f"/api/v1/runs/{failed['id']}",
            f"/api/v1/runs/{failed['id']}/logs",
            "/api/v1/workflows",
            "/metrics",
        )
    ]
    daemon.stop()
    stored = b"".join(p.read_bytes() for p in daemon.state_dir.glob("tead.db*"))
    for value in (FILE_SECRET, ENV_SECRET):
        assert value.encode() not in stored
        assert value not in daemon.logs()
        for answer in answers:
            assert value not in answer


def test_an_unknown_secret_fails_the_run_naming_it(daemon_factory: Factory) -> None:
    daemon = daemon_factory()
    daemon.write(
        "wf.yaml",
        """\
        name: missing
        env: {TOKEN: {secret: no_such_secret}}
        nodes:
          - name: a
        """,
    )
    daemon.start()
    run = daemon.wait_run(daemon.dispatch("missing")["id"])
    assert run["status"] == "failed"
    assert run["error"].startswith("env.TOKEN: unknown secret 'no_such_secret' (no file "), run
    assert "TEAD_SECRET_NO_SUCH_SECRET" in run["error"]


def test_a_secrets_folder_open_to_others_is_refused(daemon_factory: Factory) -> None:
    """The daemon does not start with a secrets folder that others may read."""
    daemon = daemon_factory()
    folder = daemon.state_dir / "secrets"
    folder.mkdir(parents=True)
    os.chmod(folder, 0o755)
    daemon.start(wait=False)
    assert daemon.proc is not None
    assert daemon.proc.wait(timeout=30) == 2
    assert "is open to group or others (mode 0755): chmod 700 it" in daemon.logs()
    assert "Traceback" not in daemon.logs()


def test_a_secret_file_open_to_others_fails_the_run(daemon_factory: Factory) -> None:
    daemon = daemon_factory()
    folder = daemon.state_dir / "secrets"
    folder.mkdir(parents=True, mode=0o700)
    secret: Path = folder / "token"
    secret.write_text("abcdef")
    os.chmod(secret, 0o644)
    daemon.write("wf.yaml", "name: w\nenv: {T: {secret: token}}\nnodes:\n  - name: a\n")
    daemon.start()
    run = daemon.wait_run(daemon.dispatch("w")["id"])
    assert run["status"] == "failed"
    assert "is open to group or others (mode 0644): chmod 600 it" in run["error"]


def _secret_file(daemon: DaemonProcess, name: str, value: str) -> None:
    folder = daemon.state_dir / "secrets"
    folder.mkdir(parents=True, mode=0o700, exist_ok=True)
    os.chmod(daemon.state_dir, 0o700)
    (folder / name).write_text(value)
    os.chmod(folder / name, 0o600)


KEY_NAMED = """\
name: key-named
env: {W1: {secret: w1}, W2: {secret: w2}}
nodes:
  - name: a
    run: |
      import os
      print(os.environ["W1"], os.environ["W2"])
      return {"seen": os.environ["W1"]}
  - name: merge
    run: |
      raise ValueError("merge failed")
edges:
  - {from: __start__, to: a}
  - {from: a, to: merge}
  - {from: merge, to: __end__}
"""


def test_a_secret_equal_to_a_key_name_does_not_corrupt_records(
    daemon_factory: Factory, tead_cli: RunTead
) -> None:
    """Secrets `status` and `node` mask values but never the keys of the records tead
    writes: later runs' `nodes` and `failure` keep their keys, `tead runs show` works."""
    daemon = daemon_factory()
    _secret_file(daemon, "w1", "status")
    _secret_file(daemon, "w2", "node")
    daemon.write("key.yaml", KEY_NAMED)
    daemon.start()
    first = daemon.wait_run(daemon.dispatch("key-named")["id"])
    assert first["status"] == "failed"
    second = daemon.wait_run(daemon.dispatch("key-named")["id"])
    for run in (first, second):
        assert [(n["node"], n["status"]) for n in run["nodes"]] == [
            ("a", "succeeded"),
            ("merge", "failed"),
        ], run["nodes"]
        assert run["failure"]["node"] == "merge", run["failure"]
        shown = tead_cli("runs", "show", run["id"], "--url", daemon.url)
        assert shown.returncode == 0, shown.stderr
        assert "Traceback" not in shown.stderr


def test_a_secret_with_trailing_whitespace_is_masked_when_stripped(
    daemon_factory: Factory,
) -> None:
    """A secret file `value\\r\\n` read by a node with `.strip()`: the stripped value is
    masked too, in the final state, the log lines and the database."""
    daemon = daemon_factory()
    _secret_file(daemon, "crlf", "crlf-secret-value\r\n")
    _secret_file(daemon, "lines", "lines-secret-value\n\n")
    daemon.write(
        "strip.yaml",
        """\
        name: strip
        env: {A: {secret: crlf}, B: {secret: lines}}
        nodes:
          - name: a
            run: |
              import os
              a, b = os.environ["A"].strip(), os.environ["B"].strip()
              print("values", a, b)
              return {"a": a, "b": b}
        """,
    )
    daemon.start()
    run = daemon.wait_run(daemon.dispatch("strip")["id"])
    assert run["status"] == "succeeded", run
    assert (run["final_state"]["a"], run["final_state"]["b"]) == ("***", "***")
    logs = daemon.get(f"/api/v1/runs/{run['id']}/logs").text
    assert "values *** ***" in logs, logs
    daemon.stop()
    stored = b"".join(p.read_bytes() for p in daemon.state_dir.glob("tead.db*"))
    assert b"crlf-secret-value" not in stored
    assert b"lines-secret-value" not in stored


LONG_SECRET = "Qv7~long~Secret~Wj9"
PEM_SECRET = "Kq9~BEGIN\nmQ7~body~Hx4\nZp3~END"

CUT = """\
name: cut-{strategy}
env: {{S: {{secret: long}}, P: {{secret: pem}}}}
settings:
  parallel: {{strategy: {strategy}, max_workers: 2}}
nodes:
  - name: start
    run: |
      return {{"items": [0, 1]}}
  - name: work
    run: |
      import os, sys
      s, p = os.environ["S"], os.environ["P"]
      print("x" * 8185 + s)
      sys.stdout.write("y" * 8190 + s + "\\n")
      sys.stdout.flush()
      os.write(1, ("z" * 65530 + s + "\\n").encode())
      os.write(1, ("w" * 65534 + p + "\\n").encode())
      for line in p.split("\\n"):
          print(line, flush=True)
  - name: merge
    run: |
      return None
edges:
  - {{from: __start__, to: start}}
  - {{from: start, to: work, parallel: true, for_each: "state['items']", item_var: item,
     fan_in: merge}}
  - {{from: work, to: merge}}
  - {{from: merge, to: __end__}}
"""


def _halves(value: str) -> list[str]:
    return [part for k in range(3, len(value) - 2) for part in (value[:k], value[k:])]


def test_a_secret_cut_between_pieces_is_masked_whole(daemon_factory: Factory) -> None:
    """Secrets printed where a long line is cut (8 KiB) or a descriptor read ends (64 KiB),
    a multi-line one too, from thread and process branches: neither the database file nor
    the logs API holds any part of them of 3 characters or more."""
    daemon = daemon_factory()
    _secret_file(daemon, "long", LONG_SECRET)
    _secret_file(daemon, "pem", PEM_SECRET)
    for strategy in ("thread", "process"):
        daemon.write(f"cut-{strategy}.yaml", CUT.format(strategy=strategy))
    daemon.start()
    answers = []
    for strategy in ("thread", "process"):
        run = daemon.wait_run(daemon.dispatch(f"cut-{strategy}")["id"], timeout_s=90)
        assert run["status"] == "succeeded", run
        lines = daemon.get(f"/api/v1/runs/{run['id']}/logs").json()
        text = "\n".join(e["line"] for e in lines)
        assert text.count("***") >= 10, text.replace("x" * 100, "").replace("z" * 100, "")
        answers.append(text)
    daemon.stop()
    stored = b"".join(p.read_bytes() for p in daemon.state_dir.glob("tead.db*"))
    for value in (LONG_SECRET, *PEM_SECRET.split("\n"), PEM_SECRET):
        for half in _halves(value):
            assert half.encode() not in stored, half
            for answer in answers:
                assert half not in answer, half


def test_a_thread_nodes_log_record_reaches_the_daemons_log_masked(
    daemon_factory: Factory,
) -> None:
    """Under `isolation: thread` a node's `logging.warning(value)` is kept in the run's
    logs and printed by the daemon's log handler, both masked."""
    value = "thread-log-secret-4Fq"
    daemon = daemon_factory(env={"TEAD_ISOLATION": "thread", "TEAD_SECRET_LOGGED": value})
    daemon.write(
        "logs.yaml",
        """\
        name: logs
        nodes:
          - name: a
            run: |
              import logging, os
              logging.warning("the value is %s", os.environ["TEAD_SECRET_LOGGED"])
        """,
    )
    daemon.start()
    run = daemon.wait_run(daemon.dispatch("logs")["id"])
    assert run["status"] == "succeeded", run
    logs_path = f"/api/v1/runs/{run['id']}/logs"
    daemon.wait_for(lambda: "the value is ***" in daemon.get(logs_path).text, what="run log")
    daemon.stop()
    assert "the value is ***" in daemon.logs()
    assert value not in daemon.logs()
