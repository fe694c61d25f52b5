"""Saving respects the file system (issue 11, "Saving that respects the file system").

A failed or killed save leaves the previous file intact; the temporary file a
killed save leaves (``.<name>.fastrnn-tmp-<pid>-<random>``) is removed by the
next save to the same file; a replaced file keeps its permission bits; a save
through a symlink replaces the link's target and keeps the link.
"""

import os
import stat
import subprocess
import sys

import numpy as np
import pytest

import fastrnn.keras as keras
from fastrnn.keras import model_file

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions, symlinks and processes")


def _model(value):
    model = keras.Sequential([keras.layers.Dense(3, input_shape=(4,))])
    model.build((None, 4))
    model.set_weights([np.full(w.shape, value, np.float32) for w in model.get_weights()])
    return model


def _kernel(path):
    return keras.load_model(path).get_weights()[0]


def _dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_save_that_fails_midway_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "model.fastrnn"
    _model(1.0).save(path)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("no space left on device (simulated)")

    monkeypatch.setattr(model_file, "_write_array", fail)
    with pytest.raises(OSError, match="simulated"):
        _model(2.0).save(path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.fastrnn"]


@posix_only
def test_a_stale_temporary_of_a_dead_save_is_removed_by_the_next_save(tmp_path):
    path = tmp_path / "model.fastrnn"
    _model(1.0).save(path)
    stale = tmp_path / f".model.fastrnn.fastrnn-tmp-{_dead_pid()}-0123456789ab"
    stale.write_bytes(b"half a model")
    running = tmp_path / f".model.fastrnn.fastrnn-tmp-{os.getpid()}-0123456789ab"  # a live process's
    running.write_bytes(b"in progress")
    other = tmp_path / f".other.fastrnn.fastrnn-tmp-{_dead_pid()}-0123456789ab"  # another file's
    other.write_bytes(b"not ours")
    _model(2.0).save(path)
    assert not stale.exists()
    assert running.exists() and other.exists()
    assert np.all(_kernel(path) == 2.0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork to kill a save midway")
def test_a_killed_save_leaves_the_old_file_and_a_recognisable_temporary(tmp_path):
    path = tmp_path / "model.fastrnn"
    _model(1.0).save(path)
    before = path.read_bytes()
    pid = os.fork()
    if pid == 0:  # the child dies while writing the arrays, with no chance to clean up
        try:
            model_file._write_array = lambda *args, **kwargs: os._exit(9)
            _model(2.0).save(path)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 9
    assert path.read_bytes() == before
    left = sorted(os.listdir(tmp_path))
    assert len(left) == 2 and left[0].startswith(f".model.fastrnn.fastrnn-tmp-{pid}-")
    _model(3.0).save(path)
    assert sorted(os.listdir(tmp_path)) == ["model.fastrnn"]
    assert np.all(_kernel(path) == 3.0)


@posix_only
@pytest.mark.parametrize("mode", [0o600, 0o640, 0o604])
def test_saving_over_a_file_keeps_its_permissions(tmp_path, mode):
    path = tmp_path / "model.fastrnn"
    _model(1.0).save(path)
    os.chmod(path, mode)
    _model(2.0).save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    assert np.all(_kernel(path) == 2.0)


@posix_only
def test_a_new_file_gets_the_umask_default(tmp_path):
    old = os.umask(0o027)
    try:
        _model(1.0).save(tmp_path / "model.fastrnn")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "model.fastrnn").st_mode) == 0o640


@posix_only
@pytest.mark.parametrize("relative", [False, True])
def test_saving_through_a_symlink_writes_its_target(tmp_path, relative):
    (tmp_path / "store").mkdir()
    target = tmp_path / "store" / "real.fastrnn"
    _model(1.0).save(target)
    link = tmp_path / "link.fastrnn"
    os.symlink(os.path.join("store", "real.fastrnn") if relative else target, link)
    _model(2.0).save(link)
    assert link.is_symlink() and os.path.samefile(link, target)
    assert np.all(_kernel(target) == 2.0)
    assert sorted(os.listdir(tmp_path)) == ["link.fastrnn", "store"]
    assert sorted(os.listdir(tmp_path / "store")) == ["real.fastrnn"]
