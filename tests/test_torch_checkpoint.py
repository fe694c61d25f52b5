"""fastrnn.nn.load_torch_checkpoint against torch.load on files torch writes, and against
files made to harm: code that must not run, sizes that must not be allocated, bytes cut short.

The files come from ``torch.save`` in each test (torch is only needed to write them and to
give the expected values); hand-made files are written with :mod:`zipfile` and :mod:`pickle`,
their tensors pickled with torch's own rebuild functions, so they differ from torch's files
only where a test means them to.
"""

import collections
import io
import os
import pickle
import re
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import fastrnn.nn as fnn
from fastrnn.exceptions import ArgumentError, CheckpointError
from helpers import assert_close
from tolerances import TORCH_PARITY

FORMATS = {"zip": {}, "legacy": {"_use_new_zipfile_serialization": False}}


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def save(torch, obj, path, fmt="zip", protocol=2):
    torch.save(obj, path, pickle_protocol=protocol, **FORMATS[fmt])
    return path


def expected_array(tensor):
    """What the loader gives for a tensor: its numpy array, bfloat16 widened to float32."""
    import torch
    return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).detach().numpy()


def assert_same(loaded, reference, where="checkpoint"):
    """``loaded`` (fastrnn) equals ``reference`` (torch.load) exactly, containers and all."""
    import torch
    if isinstance(reference, torch.Tensor):
        expected = expected_array(reference)
        assert isinstance(loaded, np.ndarray), f"{where}: {type(loaded).__name__}, expected an ndarray"
        assert loaded.dtype == expected.dtype and loaded.shape == expected.shape, (
            f"{where}: {loaded.dtype}{loaded.shape}, expected {expected.dtype}{expected.shape}")
        assert loaded.tobytes() == expected.tobytes(), f"{where}: values differ"
    elif isinstance(reference, dict):
        assert isinstance(loaded, dict) and list(loaded) == list(reference), f"{where}: keys differ"
        for key in reference:
            assert_same(loaded[key], reference[key], f"{where}[{key!r}]")
    elif isinstance(reference, (list, tuple)):
        assert type(loaded) is type(reference) or isinstance(reference, torch.Size), f"{where}: container type"
        assert len(loaded) == len(reference), f"{where}: length"
        for i, (a, b) in enumerate(zip(loaded, reference)):
            assert_same(a, b, f"{where}[{i}]")
    else:
        assert type(loaded) is type(reference) and loaded == reference, f"{where}: {loaded!r} != {reference!r}"


def torch_models(torch):
    torch.manual_seed(0)
    return {
        "LSTM": torch.nn.LSTM(5, 7, num_layers=2, bidirectional=True),
        "GRU": torch.nn.GRU(5, 7, batch_first=True),
        "LSTM-proj": torch.nn.LSTM(5, 7, proj_size=3),
        "classifier": torch.nn.Sequential(torch.nn.Embedding(11, 5), torch.nn.Linear(5, 3)),
        "float64": torch.nn.Linear(4, 2).double(),
    }


# files torch writes -------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch.load's, on protocol 4
@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("fmt", FORMATS)
def test_state_dicts_of_torch_models(torch, tmp_path, fmt, protocol):
    for name, model in torch_models(torch).items():
        path = save(torch, model.state_dict(), tmp_path / f"{name}.pt", fmt, protocol)
        loaded = fnn.load_torch_checkpoint(path)
        assert isinstance(loaded, collections.OrderedDict)
        assert_same(loaded, torch.load(path, weights_only=False), name)


def tensors_of_every_dtype(torch):
    g = torch.Generator().manual_seed(1)
    out = {}
    for dtype in (torch.float16, torch.float32, torch.float64, torch.bfloat16, torch.complex64, torch.complex128):
        out[str(dtype)] = torch.randn(3, 4, generator=g).to(dtype)
    for dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8):
        out[str(dtype)] = torch.randint(-100 if dtype != torch.uint8 else 0, 100, (5,), generator=g).to(dtype)
    out["int64 extremes"] = torch.tensor([-2**63, 2**63 - 1])
    out["bool"] = torch.tensor([[True, False], [False, True]])
    out["bf16 extremes"] = torch.tensor([float("inf"), -0.0, 3.0e38, 1e-40, float("nan")], dtype=torch.bfloat16)
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_dtype_numpy_has(torch, tmp_path, fmt):
    obj = tensors_of_every_dtype(torch)
    path = save(torch, obj, tmp_path / "dtypes.pt", fmt)
    loaded = fnn.load_torch_checkpoint(path)
    assert_same(loaded, torch.load(path, weights_only=False))
    assert loaded["torch.bfloat16"].dtype == np.float32  # widened, exactly (assert_same compared bytes)


def test_uint16_in_the_zip_format(torch, tmp_path):
    # torch >= 2.3 writes these with _rebuild_tensor_v3 and an untyped storage
    obj = {"u16": torch.tensor([0, 1, 65535], dtype=torch.int32).to(torch.uint16),
           "u32": torch.tensor([0, 7], dtype=torch.int64).to(torch.uint32)}
    path = save(torch, obj, tmp_path / "uint.pt")
    assert_same(fnn.load_torch_checkpoint(path), torch.load(path, weights_only=False))


@pytest.mark.parametrize("fmt", FORMATS)
def test_views_share_their_storage(torch, tmp_path, fmt):
    base = torch.arange(60, dtype=torch.float32).reshape(6, 10)
    obj = {"base": base, "transposed": base.t(), "slice": base[2:5, 1::3], "row": base[4],
           "element": base[3, 7], "expanded": base[0, :1].expand(3, 4), "scalar": torch.tensor(2.5),
           "empty": torch.zeros(0, 3), "separate": torch.ones(2)}
    path = save(torch, obj, tmp_path / "views.pt", fmt)
    loaded = fnn.load_torch_checkpoint(path)
    assert_same(loaded, torch.load(path, weights_only=False))
    assert not loaded["transposed"].flags.c_contiguous
    assert loaded["scalar"].shape == () and loaded["element"].shape == ()
    for key in ("transposed", "slice", "row", "element", "expanded"):
        assert np.shares_memory(loaded[key], loaded["base"]), key
    assert not np.shares_memory(loaded["separate"], loaded["base"])
    loaded["base"][3, 1] = -1.0  # one storage, as in torch: a write shows through every view
    assert loaded["transposed"][1, 3] == -1.0 and loaded["slice"][1, 0] == -1.0


@pytest.mark.parametrize("fmt", FORMATS)
def test_optimizer_state_dict(torch, tmp_path, fmt):
    torch.manual_seed(0)
    model = torch.nn.LSTM(3, 4)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.9), amsgrad=True)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(5, 2, 3))[0].square().sum().backward()
        optimizer.step()
    path = save(torch, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 3,
                        "extras": {"note": "text", "pair": (1, None), "flags": [True, 0.5]}},
                tmp_path / "optim.pt", fmt)
    loaded = fnn.load_torch_checkpoint(path)
    assert_same(loaded, torch.load(path, weights_only=False))
    assert loaded["optimizer"]["param_groups"][0]["betas"] == (0.8, 0.9)
    assert loaded["optimizer"]["state"][0]["step"].shape == ()


def test_other_values_torch_pickles(torch, tmp_path):
    obj = {"size": torch.Size([2, 3]), "device": torch.device("cpu"), "bytes": b"\x00\xff", "set": {1, 2},
           "complex": 1 + 2j, "parameter": torch.nn.Parameter(torch.ones(2))}
    path = save(torch, obj, tmp_path / "values.pt")
    loaded = fnn.load_torch_checkpoint(path)
    assert loaded["size"] == (2, 3) and loaded["device"] == "cpu" and loaded["bytes"] == b"\x00\xff"
    assert loaded["set"] == {1, 2} and loaded["complex"] == 1 + 2j
    assert_same(loaded["parameter"], torch.load(path, weights_only=False)["parameter"])


def test_a_file_object_and_a_bytes_buffer(torch, tmp_path):
    sd = torch.nn.Linear(3, 2).state_dict()
    path = save(torch, sd, tmp_path / "linear.pt")
    with open(path, "rb") as file:
        assert_same(fnn.load_torch_checkpoint(file), sd)
    assert_same(fnn.load_torch_checkpoint(io.BytesIO(path.read_bytes())), sd)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_file_object_read_from_its_position(torch, tmp_path, fmt):
    sd = torch.nn.GRU(3, 2).state_dict()
    buffer = io.BytesIO(b"header" + save(torch, sd, tmp_path / "gru.pt", fmt).read_bytes())
    buffer.seek(6)
    assert_same(fnn.load_torch_checkpoint(buffer), sd)


def test_a_recompressed_archive(torch, tmp_path):
    sd = torch.nn.LSTM(3, 2).state_dict()
    path = save(torch, sd, tmp_path / "lstm.pt")
    deflated = tmp_path / "deflated.pt"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info))
    assert_same(fnn.load_torch_checkpoint(deflated), sd)


def test_loading_does_not_import_torch(torch, tmp_path):
    path = save(torch, torch.nn.GRU(2, 3).state_dict(), tmp_path / "gru.pt")
    legacy = save(torch, torch.nn.GRU(2, 3).state_dict(), tmp_path / "gru_legacy.pt", "legacy")
    code = ("import sys; sys.modules['torch'] = None\n"  # any import of torch now fails
            "import fastrnn.nn as nn\n"
            f"for p in ({str(path)!r}, {str(legacy)!r}):\n"
            "    sd = nn.load_torch_checkpoint(p); assert sd['weight_ih_l0'].shape == (9, 2)\n"
            "    m = nn.GRU(2, 3); m.load_state_dict(p)\n"
            "print('ok')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


@pytest.mark.parametrize("fmt", FORMATS)
def test_load_state_dict_from_a_path_gives_torch_outputs(torch, tmp_path, fmt):
    torch.manual_seed(3)
    reference = torch.nn.LSTM(4, 6, num_layers=2, bidirectional=True, batch_first=True)
    path = save(torch, reference.state_dict(), tmp_path / "lstm.pt", fmt)
    model = fnn.LSTM(4, 6, num_layers=2, bidirectional=True, batch_first=True, seed=9)
    assert model.load_state_dict(str(path)) == ([], [])
    assert model.load_state_dict(path) == ([], [])  # a pathlib.Path too
    x = np.random.default_rng(0).standard_normal((3, 5, 4)).astype(np.float32)
    output, (h_n, c_n) = model(x)
    with torch.no_grad():
        output_t, (h_t, c_t) = reference(torch.from_numpy(x))
    tol = TORCH_PARITY[np.dtype(np.float32)]
    assert_close(output, output_t.numpy(), tol, "LSTM from a .pt file", "output")
    assert_close(h_n, h_t.numpy(), tol, "LSTM from a .pt file", "h_n")
    assert_close(c_n, c_t.numpy(), tol, "LSTM from a .pt file", "c_n")


def test_load_state_dict_names_what_a_checkpoint_lacks(torch, tmp_path):
    path = save(torch, {"model": torch.nn.GRU(2, 3).state_dict()}, tmp_path / "wrapped.pt")
    with pytest.raises(ArgumentError, match="missing key.*weight_ih_l0.*unexpected key.*'model'"):
        fnn.GRU(2, 3).load_state_dict(path)


# hand-made files --------------------------------------------------------------------------------
class StorageRef:
    """Pickled as torch's persistent id of a storage."""

    def __init__(self, key, type_name="FloatStorage", numel=4):
        self.key, self.type_name, self.numel = key, type_name, numel


class TensorRef:
    """Pickled as torch pickles a tensor, with whatever arguments a test wants."""

    def __init__(self, *args, function="_rebuild_tensor_v2"):
        self.args, self.function = args, function

    def __reduce__(self):
        import torch._utils
        return getattr(torch._utils, self.function), self.args


def craft_pickle(obj, legacy=False, protocol=2):
    import torch

    class Pickler(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, StorageRef):
                record = ("storage", getattr(torch, o.type_name), o.key, "cpu", o.numel)
                return record + (None,) if legacy else record
            return None

    buffer = io.BytesIO()
    Pickler(buffer, protocol=protocol).dump(obj)
    return buffer.getvalue()


def craft_zip(path, data_pkl, storages=None, byteorder="little", prefix="archive"):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{prefix}/data.pkl", data_pkl)
        if byteorder is not None:
            archive.writestr(f"{prefix}/byteorder", byteorder)
        for key, raw in (storages or {}).items():
            archive.writestr(f"{prefix}/data/{key}", raw)
        archive.writestr(f"{prefix}/version", "3\n")
    return path


def craft_legacy(path, data_pkl, storages=None, keys=None, little_endian=True):
    """The legacy stream: magic, protocol, sys info, the object, the keys, each storage."""
    storages = storages or {}
    parts = [pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2), pickle.dumps(1001, protocol=2),
             pickle.dumps({"protocol_version": 1001, "little_endian": little_endian,
                           "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2),
             data_pkl, pickle.dumps(sorted(storages) if keys is None else keys, protocol=2)]
    for key in sorted(storages):
        numel, raw = storages[key]
        parts.append(struct.pack("<q", numel) + raw)
    path.write_bytes(b"".join(parts))
    return path


def plain_tensor(key="0", numel=4, size=(2, 2), stride=(2, 1), offset=0, type_name="FloatStorage"):
    return TensorRef(StorageRef(key, type_name, numel), offset, size, stride, False, collections.OrderedDict())


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_data_reads_as_pickle_reads_it(tmp_path, protocol):
    shared = [1, 2]
    obj = {"values": [1, 2.5, None, True, (1, (2,)), "x" * 300, b"\x00\xff" * 200, 2**100, -2**70, 1 + 2j],
           "sets": [{1, 2}, frozenset({3})], "ordered": collections.OrderedDict([("k", [[], {}, ()])]),
           3: (None,), "s1": shared, "s2": shared}
    loaded = fnn.load_torch_checkpoint(craft_zip(tmp_path / "plain.pt", pickle.dumps(obj, protocol=protocol)))
    assert loaded == obj and type(loaded["ordered"]) is collections.OrderedDict
    assert loaded["s1"] is loaded["s2"]  # the memo keeps sharing


def test_hand_made_files_read_like_torch_files(torch, tmp_path):
    # the crafting helpers are right: torch itself reads what they write the same way
    values = np.arange(4, dtype=np.float32)
    path = craft_zip(tmp_path / "ok.pt", craft_pickle({"w": plain_tensor()}), {"0": values.tobytes()})
    assert_same(fnn.load_torch_checkpoint(path), torch.load(path, weights_only=False))
    legacy = craft_legacy(tmp_path / "ok_legacy.pt", craft_pickle({"w": plain_tensor()}, legacy=True),
                          {"0": (4, values.tobytes())})
    assert_same(fnn.load_torch_checkpoint(legacy), torch.load(legacy, weights_only=False))


def test_a_big_endian_zip_file(torch, tmp_path):
    values = np.array([1.5, -2.0, 3.25, 1e-3], dtype=np.float64)
    obj = {"w": plain_tensor(type_name="DoubleStorage", size=(4,), stride=(1,)),
           "bf": plain_tensor(key="1", type_name="BFloat16Storage", numel=2, size=(2,), stride=(1,))}
    bf16_bits = np.array([0x3FC0, 0xC000], dtype=">u2")  # 1.5, -2.0
    path = craft_zip(tmp_path / "big.pt", craft_pickle(obj),
                     {"0": values.astype(">f8").tobytes(), "1": bf16_bits.tobytes()}, byteorder="big")
    loaded = fnn.load_torch_checkpoint(path)
    np.testing.assert_array_equal(loaded["w"], values)
    np.testing.assert_array_equal(loaded["bf"], np.array([1.5, -2.0], np.float32))
    assert_same(loaded, torch.load(path, weights_only=False))


def test_bool_bytes_other_than_one_read_as_true(torch, tmp_path):
    obj = {"mask": plain_tensor(type_name="BoolStorage", numel=4, size=(4,), stride=(1,))}
    path = craft_zip(tmp_path / "mask.pt", craft_pickle(obj), {"0": bytes([0, 1, 2, 255])})
    mask = fnn.load_torch_checkpoint(path)["mask"]
    assert mask.tolist() == [False, True, True, True] and mask.view(np.uint8).tolist() == [0, 1, 1, 1]


# malicious files: nothing may run ----------------------------------------------------------
class RunsCode:
    """What an attacker pickles: unpickling calls ``function(*args)``."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


class Gadget:
    """A class of this test module with a __reduce__ of its own."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return Gadget, (self.marker,)


def payloads(marker):
    import builtins
    return {
        "os.system": RunsCode(os.system, f"touch {marker}"),
        "builtins.eval": RunsCode(builtins.eval, f"open({str(marker)!r}, 'w').close()"),
        "builtins.exec": RunsCode(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
        "subprocess.Popen": RunsCode(subprocess.Popen, ["touch", str(marker)]),
        "a class of this module": Gadget(str(marker)),
    }


def test_the_payloads_are_live(tmp_path):
    # the refusal tests below can fail: plain pickle runs this payload and the marker appears
    marker = tmp_path / "marker"
    pickle.loads(pickle.dumps(payloads(marker)["builtins.exec"], protocol=2))
    assert marker.exists()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("payload", ["os.system", "builtins.eval", "builtins.exec", "subprocess.Popen",
                                     "a class of this module"])
def test_code_in_a_checkpoint_is_refused_by_name(torch, tmp_path, fmt, payload):
    marker = tmp_path / "marker"
    # pickle names a function by the module that defines it: os.system is posix.system on Linux
    name = {"a class of this module": f"{Gadget.__module__}.Gadget",
            "os.system": f"{os.system.__module__}.system"}.get(payload, payload)
    # written by torch.save itself, next to real tensors, as an attacker would
    path = save(torch, {"weight": torch.ones(2), "payload": payloads(marker)[payload]}, tmp_path / "evil.pt", fmt)
    with pytest.raises(CheckpointError, match=re.escape(f"refused global '{name}'")):
        fnn.load_torch_checkpoint(path)
    with pytest.raises(CheckpointError, match=re.escape(f"refused global '{name}'")):
        fnn.LSTM(2, 2).load_state_dict(path)
    assert not marker.exists()
    with pytest.raises(Exception):  # the oracle: torch's own safe loader refuses the file too
        torch.load(path, weights_only=True)
    assert not marker.exists()


ARBITRARY_OBJECTS = {
    "INST": b"(S'touch MARKER'\nios\nsystem\n.",
    "OBJ": b"\x80\x02(cos\nsystem\nS'touch MARKER'\no.",
    "EXT1": b"\x80\x02\x82\x01.",
    "BUILD on a list": b"\x80\x02]}\x94b.",
    "REDUCE on a string": b"\x80\x02X\x01\x00\x00\x00a)R.",
    "NEWOBJ on a function": b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n)\x81.",
    "STACK_GLOBAL": b"\x80\x04\x8c\x05posix\x8c\x06system\x93.",
    "rebuild without storage": b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(K\x01K\x02K\x03tR.",
    "unknown opcode": b"\x80\x02\xff.",
    "STOP with an empty stack": b"\x80\x02.",
    "no STOP": b"\x80\x02]",
    "memo read before write": b"\x80\x02h\x07.",
}


@pytest.mark.parametrize("case", ARBITRARY_OBJECTS)
def test_opcodes_that_build_objects_are_refused(tmp_path, case):
    marker = tmp_path / "MARKER"
    data = ARBITRARY_OBJECTS[case].replace(b"MARKER", str(marker).encode())
    path = craft_zip(tmp_path / "evil.pt", data)
    with pytest.raises(CheckpointError) as info:
        fnn.load_torch_checkpoint(path)
    if case in ("INST", "STACK_GLOBAL", "OBJ"):
        assert "system" in str(info.value) or "INST" in str(info.value)
    assert not marker.exists()


def test_deep_nesting_is_no_recursion_bomb(tmp_path):
    depth = 200_000
    data = b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."
    loaded = fnn.load_torch_checkpoint(craft_zip(tmp_path / "deep.pt", data))
    for _ in range(depth - 1):
        loaded, = loaded
    assert loaded == []


_SHARED_TUPLE = b")" + b"2\x86" * 64  # t = (t, t) 64 times: 2**64 leaves, 129 bytes
HOSTILE_STRUCTURES = {
    # CPython hashes nested tuples recursively in C: this key would overflow the C stack
    "deep tuple as a dict key": (b"\x80\x02}" + b")" + b"\x85" * 300_000 + b"Ns.", "nests too deeply"),
    "deep tuple in a frozenset": (b"\x80\x02(" + b")" + b"\x85" * 300_000 + b"\x91.", "nests too deeply"),
    "shared tuple as a dict key": (b"\x80\x02}" + _SHARED_TUPLE + b"Ns.", "too large to hash"),
    # a message quoting the persistent id must not print all 2**64 leaves
    "shared tuple as a storage id": (b"\x80\x02" + _SHARED_TUPLE + b"Q.", "unexpected persistent id"),
}


@pytest.mark.parametrize("case", HOSTILE_STRUCTURES)
def test_structures_that_would_crash_or_hang_are_refused(tmp_path, case):
    data, message = HOSTILE_STRUCTURES[case]
    path = craft_zip(tmp_path / "hostile.pt", data)
    # in a child process: a regression would be a segfault or a hang, not an exception
    code = ("import sys, fastrnn.nn as nn\n"
            "from fastrnn.exceptions import CheckpointError\n"
            "try:\n"
            f"    nn.load_torch_checkpoint({str(path)!r})\n"
            "except CheckpointError as e:\n"
            "    print('refused:', e)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    assert result.stdout.startswith("refused:") and message in result.stdout, result.stdout[:2000]
    assert len(result.stdout) < 2000


# malformed files: a clear error, nothing allocated beyond what the file holds -----------------------
def good_zip(torch, tmp_path):
    return save(torch, {"w": torch.arange(1000, dtype=torch.float32)}, tmp_path / "good.pt")


def test_truncated_files(torch, tmp_path):
    for fmt in FORMATS:
        raw = save(torch, {"w": torch.arange(1000, dtype=torch.float32)}, tmp_path / f"{fmt}.pt", fmt).read_bytes()
        for cut in (len(raw) - 1, len(raw) // 2, 600, 10, 1):
            path = tmp_path / "cut.pt"
            path.write_bytes(raw[:cut])
            with pytest.raises(CheckpointError):
                fnn.load_torch_checkpoint(path)


def test_corrupted_storage_bytes_fail_the_crc(torch, tmp_path):
    path = good_zip(torch, tmp_path)
    raw = bytearray(path.read_bytes())
    at = raw.find(np.arange(1000, dtype=np.float32)[500:502].tobytes())
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="CRC"):
        fnn.load_torch_checkpoint(path)


def test_files_that_are_no_checkpoint(tmp_path):
    cases = {"empty": b"", "text": b"hello world\n", "npz": b"\x93NUMPY\x01\x00", "zip without data.pkl": None}
    for name, raw in cases.items():
        path = tmp_path / "x.pt"
        if raw is None:
            with zipfile.ZipFile(path, "w") as archive:
                archive.writestr("archive/other", b"1")
        else:
            path.write_bytes(raw)
        with pytest.raises(CheckpointError):
            fnn.load_torch_checkpoint(path)
    with pytest.raises(CheckpointError, match="path must be"):
        fnn.load_torch_checkpoint(42)


BAD_TENSORS = {
    "storage missing": ({"w": plain_tensor(key="9")}, "missing"),
    "storage shorter than the tensor": ({"w": plain_tensor(size=(3, 2))}, "needs 6 elements"),
    "offset past the end": ({"w": plain_tensor(offset=4, size=(1,), stride=(1,))}, "needs 5 elements"),
    "negative size": ({"w": plain_tensor(size=(-1, 2))}, "size must be an int >= 0"),
    "negative stride": ({"w": plain_tensor(stride=(-2, 1))}, "stride must be an int >= 0"),
    "huge declared storage": ({"w": plain_tensor(numel=2**61)}, "declares"),
    "negative declared storage": ({"w": plain_tensor(numel=-4)}, ">= 0"),
    "size and stride of different lengths": ({"w": plain_tensor(size=(4,), stride=(1, 1))}, "one length"),
    "a float size": ({"w": plain_tensor(size=(2.0, 2))}, "size must be an int"),
    "quantized storage": ({"w": plain_tensor(type_name="QInt8Storage")}, "quantized"),
    "a string as storage": ({"w": TensorRef("0", 0, (2,), (1,), False, collections.OrderedDict())},
                            "storage record"),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", BAD_TENSORS)
def test_sizes_are_checked_before_allocating(torch, tmp_path, fmt, case):
    obj, message = BAD_TENSORS[case]
    raw = np.arange(4, dtype=np.float32).tobytes()
    if fmt == "zip":
        path = craft_zip(tmp_path / "bad.pt", craft_pickle(obj), {"0": raw})
    else:
        storages = {} if case == "storage missing" else {"0": (4, raw)}
        path = craft_legacy(tmp_path / "bad.pt", craft_pickle(obj, legacy=True), storages)
        if case in ("huge declared storage",):
            message = "more than the file"
    with pytest.raises(CheckpointError, match=message):
        fnn.load_torch_checkpoint(path)


def test_zip_records_must_hold_what_they_declare(torch, tmp_path):
    obj = {"w": plain_tensor()}
    short = craft_zip(tmp_path / "short.pt", craft_pickle(obj), {"0": b"\x00" * 12})
    with pytest.raises(CheckpointError, match="declares 4 x torch.float32 = 16 bytes; the archive holds 12"):
        fnn.load_torch_checkpoint(short)
    odd = craft_zip(tmp_path / "order.pt", craft_pickle(obj), {"0": b"\x00" * 16}, byteorder="middle")
    with pytest.raises(CheckpointError, match="byte order"):
        fnn.load_torch_checkpoint(odd)


def test_legacy_storage_records_must_match_the_pickle(torch, tmp_path):
    obj = craft_pickle({"w": plain_tensor()}, legacy=True)
    raw = np.arange(4, dtype=np.float32).tobytes()
    wrong_count = craft_legacy(tmp_path / "count.pt", obj, {"0": (5, raw)})
    with pytest.raises(CheckpointError, match="declares 4 elements, its record 5"):
        fnn.load_torch_checkpoint(wrong_count)
    unknown_key = craft_legacy(tmp_path / "key.pt", obj, {"0": (4, raw)}, keys=["0", "7"])
    with pytest.raises(CheckpointError, match="'7'"):
        fnn.load_torch_checkpoint(unknown_key)
    big_endian = craft_legacy(tmp_path / "big.pt", obj, {"0": (4, raw)}, little_endian=False)
    with pytest.raises(CheckpointError, match="big-endian"):
        fnn.load_torch_checkpoint(big_endian)


def test_dtypes_numpy_lacks_are_refused_by_name(torch, tmp_path):
    path = save(torch, {"w": torch.zeros(3, dtype=torch.float8_e4m3fn)}, tmp_path / "f8.pt")
    with pytest.raises(CheckpointError, match="torch.float8_e4m3fn has no NumPy equivalent"):
        fnn.load_torch_checkpoint(path)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_torchscript_archives_are_named(torch, tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(path))
    with pytest.raises(CheckpointError, match="TorchScript"):
        fnn.load_torch_checkpoint(path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_mutated_files_load_or_raise_checkpoint_error(torch, tmp_path, fmt):
    # random bytes changed in the pickle (zip: re-archived so the CRC holds) or anywhere (legacy)
    model = torch.nn.LSTM(2, 3)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 1, 2))[0].sum().backward()
    optimizer.step()
    raw = save(torch, {"model": model.state_dict(), "optimizer": optimizer.state_dict()},
               tmp_path / "base.pt", fmt).read_bytes()
    if fmt == "zip":
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            records = {name: archive.read(name) for name in archive.namelist()}
        pickle_name = next(name for name in records if name.endswith("/data.pkl"))
    rng = np.random.default_rng(0)
    outcomes = {"loaded": 0, "refused": 0}
    for _ in range(200):
        target = bytearray(records[pickle_name] if fmt == "zip" else raw)
        for _ in range(rng.integers(1, 4)):
            target[rng.integers(len(target))] = rng.integers(256)
        if fmt == "zip":
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w") as archive:
                for name, data in records.items():
                    archive.writestr(name, bytes(target) if name == pickle_name else data)
            data = buffer.getvalue()
        else:
            data = bytes(target)
        try:
            fnn.load_torch_checkpoint(io.BytesIO(data))
            outcomes["loaded"] += 1
        except CheckpointError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 50, outcomes
