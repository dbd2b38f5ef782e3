"""Atomic output directories: a kill at any moment leaves one whole copy; leftovers go away."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import tiny_llama
from transformers import AutoModelForCausalLM, AutoTokenizer

from tokenswap import api
from tokenswap.errors import TokenswapError
from tokenswap.io import save
from tokenswap.io.models import ModelBundle
from tokenswap.io.save import atomic_dir, exchange, recover, remove_leftovers

FILES = ("config.json", "model.safetensors", "tokenizer.json")


def write_version(path, version: str) -> None:
    for name in FILES:
        (path / name).write_text(version)


def version_of(path) -> str:
    """The one version every file of ``path`` holds; fails on a mixed or partial copy."""
    found = {(path / name).read_text() for name in FILES if (path / name).is_file()}
    assert len(found) == 1 and all((path / name).is_file() for name in FILES), found
    return found.pop()


def siblings(out) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_new_output_appears_whole_or_not_at_all(tmp_path):
    out = tmp_path / "model"
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        write_version(tmp, "new")
        raise RuntimeError("disk full")
    assert not out.exists() and siblings(out) == []
    with atomic_dir(out) as tmp:
        write_version(tmp, "new")
        assert not out.exists()
    assert version_of(out) == "new" and siblings(out) == []


def test_overwrite_keeps_the_old_output_until_the_new_one_is_complete(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    write_version(out, "old")
    with pytest.raises(RuntimeError), atomic_dir(out, overwrite=True) as tmp:
        write_version(tmp, "new")
        raise RuntimeError("killed by the user")
    assert version_of(out) == "old" and siblings(out) == []
    with atomic_dir(out, overwrite=True) as tmp:
        write_version(tmp, "new")
        assert version_of(out) == "old"
    assert version_of(out) == "new" and siblings(out) == []


def test_exchange_swaps_two_directories_or_says_it_cannot(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    (b / "x").write_text("b")
    swapped = exchange(a, b)
    assert ((a / "x").read_text(), (b / "x").read_text()) == (("b", "a") if swapped else ("a", "b"))
    if sys.platform.startswith("linux"):
        assert swapped  # glibc >= 2.28 on ext4, xfs, btrfs, tmpfs


KILL_SCRIPT = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from tokenswap.io import save

    out, mode, die_after = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    calls = 0

    def dying(real):
        def step(*args):  # the rename happens, then the process is killed (no cleanup runs)
            global calls
            result = real(*args)
            calls += 1
            if calls == die_after:
                os._exit(9)
            return result
        return step

    if mode == "renames":  # a system without renameat2: three renames
        save.exchange = lambda a, b: False
    else:  # one exchange, then the old copy is removed
        save.exchange = dying(save.exchange)
    os.replace = dying(os.replace)
    with save.atomic_dir(out, overwrite=True) as tmp:
        for name in sys.argv[4:]:
            (tmp / name).write_text("new")
""")


@pytest.mark.parametrize("mode, die_after", [("exchange", 1), ("renames", 1), ("renames", 2),
                                             ("renames", 3)])
def test_a_kill_between_the_steps_of_an_overwrite_leaves_one_whole_copy(tmp_path, mode,
                                                                        die_after):
    """Killed after each rename of the swap: ``recover`` finds one whole copy (old or new)
    under the output's name, and the next write removes what the killed writer left."""
    out = tmp_path / "checkpoint"
    out.mkdir()
    write_version(out, "old")
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    run = subprocess.run([sys.executable, str(script), str(out), mode, str(die_after), *FILES],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 9, run.stderr[-2000:]
    recover(out)
    # the swap's first step leaves the old copy in place; once the old one moved, the new one
    expected = "old" if (mode, die_after) == ("renames", 1) else "new"
    assert version_of(out) == expected
    with atomic_dir(out, overwrite=True) as tmp:
        write_version(tmp, "newer")
    assert version_of(out) == "newer" and siblings(out) == []


def test_recover_prefers_the_new_copy_and_leaves_live_writers_alone(tmp_path):
    out = tmp_path / "checkpoint"
    pid = dead_pid()
    for kind, version in (("old", "old"), ("new", "new")):
        path = tmp_path / f".checkpoint.{kind}-{pid}-abc"
        path.mkdir()
        write_version(path, version)
    live = tmp_path / f".checkpoint.new-{os.getpid()}-def"  # this process is mid-swap
    live.mkdir()
    assert recover(out) and version_of(out) == "new"
    assert not recover(out)  # nothing to do once the output exists
    assert remove_leftovers(out) == [tmp_path / f".checkpoint.old-{pid}-abc"]
    assert siblings(out) == [live.name]


def test_leftovers_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    out = tmp_path / "model"
    dead = tmp_path / f".model.tmp-{dead_pid()}-x1"
    mine = tmp_path / f".model.tmp-{os.getpid()}-x2"
    other = tmp_path / f".other.tmp-{dead_pid()}-x3"  # another output's: not ours to judge
    for path in (dead, mine, other):
        path.mkdir()
    with atomic_dir(out) as tmp:
        write_version(tmp, "new")
    assert not dead.exists() and mine.is_dir() and other.is_dir()


def test_save_model_writes_model_tokenizer_and_provenance(tmp_path, source_tokenizer):
    assert api.save_model is save.save_model
    bundle = ModelBundle(tiny_llama(len(source_tokenizer)), source_tokenizer, "tiny")
    out = save.save_model(bundle, tmp_path / "m", provenance={"method": "test"})
    assert json.loads((out / "tokenswap.json").read_text()) == {"method": "test"}
    assert AutoModelForCausalLM.from_pretrained(out).config.vocab_size == len(source_tokenizer)
    assert AutoTokenizer.from_pretrained(out).get_vocab() == source_tokenizer.get_vocab()
    with pytest.raises(Exception, match="already exists"):
        save.save_model(bundle, out)
    save.save_model(bundle, out, overwrite=True)
    assert not (out / "tokenswap.json").exists() and siblings(out) == []


def test_a_run_killed_before_its_first_checkpoint_starts_again(tmp_path):
    from tokenswap.io.checkpoint import prepare_out

    out = tmp_path / "run"
    (out / "best").mkdir(parents=True)
    (out / "log.jsonl").write_text('{"start": {"steps": 10}, "config": {}}\n{"step": 1}\n')
    assert prepare_out(out, resume=True) is False  # ours, no checkpoint: start afresh
    assert list(out.iterdir()) == []
    (out / "log.jsonl").write_text("my own notes\n")  # not our log: never removed
    with pytest.raises(TokenswapError, match="holds no checkpoint"):
        prepare_out(out, resume=True)
    assert (out / "log.jsonl").read_text() == "my own notes\n"


@pytest.mark.parametrize("where, message", [
    ("file.txt/sub", "is a file, not a directory"),
    ("/proc/tokenswap-out", "cannot write to"),
    ("/sys/tokenswap-out", "cannot write to"),
    ("missing/deeper/out", "does not exist"),
])
def test_outputs_that_cannot_be_written_fail_first(tmp_path, where, message):
    from tokenswap.io.checkpoint import prepare_out
    from tokenswap.io.save import check_output_dir, check_output_file

    (tmp_path / "file.txt").write_text("x")
    target = Path(where) if where.startswith("/") else tmp_path / where
    for check in (check_output_dir, check_output_file, lambda p: prepare_out(p, True)):
        with pytest.raises(TokenswapError, match=message):
            check(target)


def test_outputs_respect_the_umask(tmp_path):
    from tokenswap.io.save import write_file

    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f.txt").write_text("x")
        write_file(tmp_path / "r.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644


def test_json_output_is_strict():
    from tokenswap.io.save import json_text

    text = json_text({"bits": float("nan"), "rows": [float("inf"), 1.5, -float("inf")]})
    assert json.loads(text) == {"bits": None, "rows": [None, 1.5, None]}
    assert "NaN" not in text and "Infinity" not in text
