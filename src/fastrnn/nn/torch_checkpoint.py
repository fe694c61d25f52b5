"""Read ``torch.save`` files without PyTorch and without running pickled code.

A checkpoint is a pickle whose tensors refer, by key, to raw storages kept
beside it: in a zip archive (``<prefix>/data.pkl`` and ``<prefix>/data/<key>``,
torch >= 1.6) or, in the legacy format, after it in one stream (magic number,
protocol, system information, the object, the sorted storage keys, then each
storage as an int64 element count and its bytes).

The pickle is not given to :mod:`pickle`. It is interpreted here one opcode at
a time (decoded by :func:`pickletools.genops`) on a stack machine that knows
only plain values and containers, and whose globals come from a short list of
stand-ins: the tensor and storage rebuild functions, the storage types, the
dtypes, ``collections.OrderedDict`` and a few builtins. Any other global, and the
opcodes that build arbitrary objects (``INST``, ``OBJ``, extension codes), raise
:class:`~fastrnn.exceptions.CheckpointError` naming it; nothing named in the file
is ever imported or called.
"""

import _compat_pickle
import collections
import io
import os
import pickletools
import reprlib
import struct
import zipfile
import zlib

import numpy as np

from fastrnn.exceptions import CheckpointError

__all__ = ["load_torch_checkpoint"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_MAX_NDIM = 64  # numpy's limit

# torch dtype names -> numpy dtype (None: no numpy equivalent); "bfloat16" is special-cased
_DTYPES = {
    "float32": "f4", "float": "f4", "float64": "f8", "double": "f8", "float16": "f2", "half": "f2",
    "int8": "i1", "int16": "i2", "short": "i2", "int32": "i4", "int": "i4", "int64": "i8", "long": "i8",
    "uint8": "u1", "uint16": "u2", "uint32": "u4", "uint64": "u8", "bool": "?",
    "complex64": "c8", "cfloat": "c8", "complex128": "c16", "cdouble": "c16", "bfloat16": "bf16",
}
_UNSUPPORTED_DTYPES = ("complex32", "chalf", "float8_e5m2", "float8_e4m3fn", "float8_e5m2fnuz",
                       "float8_e4m3fnuz", "float8_e8m0fnu", "float4_e2m1fn_x2", "qint8", "qint32", "quint8",
                       "quint4x2", "quint2x4", "bits8", "bits16", "bits1x8", "bits2x4", "bits4x2")
_STORAGES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16", "CharStorage": "int8",
    "ByteStorage": "uint8", "BoolStorage": "bool", "BFloat16Storage": "bfloat16",
    "ComplexDoubleStorage": "complex128", "ComplexFloatStorage": "complex64", "UntypedStorage": "uint8",
}
_UNSUPPORTED_STORAGES = ("QInt8Storage", "QInt32Storage", "QUInt8Storage", "QUInt4x2Storage", "QUInt2x4Storage")


# stand-ins for the globals a checkpoint may name -------------------------------------------------
class _DType:
    """A torch dtype named in the file: its name and how its elements are stored."""

    __slots__ = ("name",)

    def __init__(self, name):
        object.__setattr__(self, "name", name)

    def __setattr__(self, key, value):
        raise CheckpointError(f"torch.{self.name} cannot take attributes")

    def numpy(self):
        """``(storage dtype, result dtype)``: bfloat16 is stored as uint16 and read as float32."""
        code = _DTYPES.get(self.name)
        if code is None:
            raise CheckpointError(f"tensor dtype torch.{self.name} has no NumPy equivalent; "
                                  f"supported: {', '.join(sorted(set(_DTYPES) - {'float', 'double'}))}")
        if code == "bf16":
            return np.dtype("u2"), np.dtype("f4")
        return np.dtype(code), np.dtype(code)

    def __repr__(self):
        return f"torch.{self.name}"


class _StorageType:
    """A storage class named in the file (``torch.FloatStorage``, ``torch.UntypedStorage`` ...)."""

    __slots__ = ("name", "dtype")

    def __init__(self, name, dtype):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "dtype", dtype)

    def __setattr__(self, key, value):
        raise CheckpointError(f"torch.{self.name} cannot take attributes")

    def __repr__(self):
        return f"torch.{self.name}"


class _Callable:
    """An allowed global that the pickle may call (REDUCE), with its arguments checked."""

    __slots__ = ("name", "function", "is_class")

    def __init__(self, name, function, is_class=False):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "function", function)
        object.__setattr__(self, "is_class", is_class)

    def __setattr__(self, key, value):
        raise CheckpointError(f"{self.name} cannot take attributes")

    def __call__(self, args):
        if type(args) is not tuple:
            raise CheckpointError(f"{self.name} called with {type(args).__name__} arguments, not a tuple")
        try:
            return self.function(self.name, *args)
        except TypeError as error:  # a wrong number of arguments
            raise CheckpointError(f"{self.name} called with unexpected arguments: {error}") from None

    def __repr__(self):
        return self.name


class _Storage:
    """One storage: its raw bytes (filled now or, in the legacy format, after the pickle)."""

    __slots__ = ("key", "dtype", "numel", "raw", "elements", "filled", "byteorder")

    def __init__(self, key, dtype, numel, byteorder):
        stored, result = dtype.numpy()
        self.key, self.dtype, self.numel, self.byteorder = key, dtype, numel, byteorder
        self.raw = bytearray(numel * stored.itemsize)
        # the array tensors are views of; for bfloat16 a float32 copy filled once the bytes are in
        self.elements = np.frombuffer(self.raw, stored) if stored == result else np.zeros(numel, result)
        self.filled = False

    @property
    def nbytes(self):
        return len(self.raw)

    def fill(self, reader, crc=None):
        """Read ``nbytes`` bytes with ``reader.readinto``, check their CRC-32 if given, convert in place."""
        view, got = memoryview(self.raw), 0
        while got < len(self.raw):
            count = reader.readinto(view[got:])
            if not count:
                raise CheckpointError(f"storage {self.key!r} is truncated: it declares {len(self.raw)} bytes "
                                      f"({self.numel} x {self.dtype!r}), the file holds {got}")
            got += count
        if crc is not None and zlib.crc32(self.raw) != crc:
            raise CheckpointError(f"storage {self.key!r} is corrupt: bad CRC-32 of its {len(self.raw)} bytes")
        stored, result = self.dtype.numpy()
        if self.byteorder == "big":
            np.frombuffer(self.raw, stored).byteswap(inplace=True)
        if stored == np.bool_:  # any nonzero byte is True, as in torch; numpy wants 0 or 1
            as_bytes = np.frombuffer(self.raw, np.uint8)
            np.minimum(as_bytes, 1, out=as_bytes)
        if stored != result:  # bfloat16: its bits are the high half of a float32, so this is exact
            bits = np.frombuffer(self.raw, stored).astype(np.uint32) << 16
            self.elements[...] = bits.view(np.float32)
            self.raw = bytearray()
        self.filled = True

    def array(self, dtype):
        """The storage's elements as a 1-D array of ``dtype`` (``_rebuild_tensor_v3`` may reinterpret)."""
        if dtype is None or dtype.name == self.dtype.name or _DTYPES.get(dtype.name) == _DTYPES.get(self.dtype.name):
            return self.elements
        stored, result = dtype.numpy()
        if stored != result or self.elements.dtype != np.uint8:
            raise CheckpointError(f"storage {self.key!r} holds {self.dtype!r}; it cannot be read as {dtype!r}")
        if self.byteorder == "big" and stored.itemsize > 1:
            raise CheckpointError(f"storage {self.key!r}: {dtype!r} in an untyped storage of a big-endian file "
                                  f"is not supported")
        if self.nbytes % stored.itemsize:
            raise CheckpointError(f"storage {self.key!r} of {self.nbytes} bytes is no whole number of {dtype!r}")
        return np.frombuffer(self.raw, stored)


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 80, 80


def _short(value):
    """A bounded repr of a value from the file, for messages (a shared structure's repr can explode)."""
    return _REPR.repr(value)


def _check_key(value):
    """Refuse a dict key or set element whose hash would recurse deeply or walk a huge shared structure.

    CPython hashes nested tuples recursively in C with no depth check: a deep enough
    tuple from the file would overflow the C stack.
    """
    pending, visits = [(value, 0)], 0
    while pending:
        item, depth = pending.pop()
        visits += 1
        if depth > 32 or visits > 10_000:
            raise CheckpointError("a dict key or set element nests too deeply or is too large to hash safely")
        if type(item) in (tuple, frozenset):
            pending.extend((child, depth + 1) for child in item)
    return value


def _check_int(what, value, minimum=0):
    if type(value) is not int or value < minimum:
        raise CheckpointError(f"{what} must be an int >= {minimum}; got {_short(value)}")
    return value


def _tensor(storage, offset, size, stride, dtype=None):
    if not isinstance(storage, _Storage):
        raise CheckpointError(f"a tensor's storage must be a storage record; got {type(storage).__name__}")
    _check_int("a tensor's storage offset", offset)
    if type(size) is not tuple or type(stride) is not tuple or len(size) != len(stride) or len(size) > _MAX_NDIM:
        raise CheckpointError(f"a tensor's size and stride must be tuples of one length <= {_MAX_NDIM}; "
                              f"got {_short(size)} and {_short(stride)}")
    for n, s in zip(size, stride):
        _check_int("a tensor's size", n)
        _check_int("a tensor's stride", s)
    elements = storage.array(dtype)
    if 0 in size:
        return np.empty(size, elements.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= elements.size:
        raise CheckpointError(f"a tensor of size {size}, stride {stride} and offset {offset} needs "
                              f"{last + 1} elements; its storage {storage.key!r} holds {elements.size}")
    itemsize = elements.dtype.itemsize
    # a view: tensors sharing a storage share memory, as in torch
    return np.ndarray(size, elements.dtype, buffer=elements, offset=offset * itemsize,
                      strides=tuple(s * itemsize for s in stride))


def _rebuild_tensor_v2(name, storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    return _tensor(storage, offset, size, stride)


def _rebuild_tensor_v3(name, storage, offset, size, stride, requires_grad, hooks, dtype, metadata=None):
    if not isinstance(dtype, _DType):
        raise CheckpointError(f"{name}: dtype must be a torch dtype; got {type(dtype).__name__}")
    return _tensor(storage, offset, size, stride, dtype)


def _rebuild_tensor(name, storage, offset, size, stride):
    return _tensor(storage, offset, size, stride)


def _rebuild_parameter(name, data, requires_grad=False, hooks=None, state=None):
    if not isinstance(data, np.ndarray):
        raise CheckpointError(f"{name}: data must be a tensor; got {type(data).__name__}")
    return data


def _rebuild_from_type(name, function, new_type, args, state=None):
    if not isinstance(function, _Callable) or type(args) is not tuple:
        raise CheckpointError(f"{name}: expected a rebuild function and its arguments")
    if not (isinstance(new_type, _Callable) and new_type.name in ("torch.Tensor", "torch.nn.parameter.Parameter")):
        raise CheckpointError(f"{name}: tensor subclass {new_type!r} is not supported")
    return function(args)


def _ordered_dict(name, *args):
    if len(args) > 1 or (args and type(args[0]) not in (list, tuple, dict, collections.OrderedDict)):
        raise CheckpointError(f"{name} called with unexpected arguments")
    if args and type(args[0]) is not dict and type(args[0]) is not collections.OrderedDict:
        for pair in args[0]:
            if type(pair) not in (list, tuple) or len(pair) != 2:
                raise CheckpointError(f"{name} called with items that are not (key, value) pairs")
            _check_key(pair[0])
    return collections.OrderedDict(*args)


def _size(name, *args):
    if len(args) != 1 or type(args[0]) not in (list, tuple):
        raise CheckpointError(f"{name} called with unexpected arguments")
    return tuple(_check_int("a torch.Size entry", n) for n in args[0])


def _device(name, *args):
    if not args or len(args) > 2 or not isinstance(args[0], str):
        raise CheckpointError(f"{name} called with unexpected arguments")
    return ":".join(str(a) for a in args)


def _typed(kinds, convert):
    def call(name, *args):
        if not all(type(a) in kinds for a in args) or len(args) > 2:
            raise CheckpointError(f"{name} called with unexpected arguments")
        if convert in (set, frozenset) and args:
            for item in args[0]:
                _check_key(item)
        return convert(*args)
    return call


def _encode(name, *args):
    # protocol 2 writes bytes as _codecs.encode(text, "latin1")
    if len(args) != 2 or type(args[0]) is not str or args[1] not in ("latin1", "latin-1"):
        raise CheckpointError(f"{name} called with unexpected arguments")
    return args[0].encode("latin-1")


_CALLABLES = {
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
    "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch._tensor._rebuild_from_type_v2": _rebuild_from_type,
    "collections.OrderedDict": _ordered_dict,
    "torch.Size": _size,
    "torch.device": _device,
    "builtins.set": _typed((list, tuple), set),
    "builtins.frozenset": _typed((list, tuple), frozenset),
    "builtins.complex": _typed((int, float), complex),
    "_codecs.encode": _encode,
}
# types that only appear as arguments of _rebuild_from_type_v2
_MARKERS = ("torch.Tensor", "torch._tensor.Tensor", "torch.nn.parameter.Parameter")


def _find_global(module, name):
    """The stand-in for ``module.name``, or an error naming it: nothing is imported."""
    if not isinstance(module, str) or not isinstance(name, str):
        raise CheckpointError(f"refused global {_short(module)}.{_short(name)}: module and name must be strings")
    # protocols 0-2 write Python 2 names (__builtin__.set, commands.Popen); name what Python 3 would run
    written = f"{module}.{name}"
    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    full = f"{module}.{name}"
    if full in _CALLABLES:
        return _Callable(full, _CALLABLES[full], is_class=(full == "collections.OrderedDict"))
    if full in _MARKERS:
        return _Callable(full.replace("torch._tensor.Tensor", "torch.Tensor"), _refuse_call)
    if module in ("torch", "torch.cuda", "torch.storage"):
        if name in _STORAGES or name == "TypedStorage":
            if name == "TypedStorage":
                raise CheckpointError("refused global 'torch.storage.TypedStorage' outside a storage record")
            return _StorageType(name, _DType(_STORAGES[name]))
        if name in _UNSUPPORTED_STORAGES:
            raise CheckpointError(f"quantized storage torch.{name} is not supported")
        if module == "torch" and (name in _DTYPES or name in _UNSUPPORTED_DTYPES):
            return _DType(name)
    written = f" (written as {written!r})" if written != full else ""
    raise CheckpointError(
        f"refused global {full!r}{written}: a checkpoint may only name torch's tensor and storage rebuild "
        f"functions, storage types, dtypes, collections.OrderedDict and plain containers "
        f"(the same rule as torch.load(weights_only=True)); nothing from the file was run")


def _refuse_call(name, *args):
    raise CheckpointError(f"{name} may not be called by a checkpoint")


# the interpreter ----------------------------------------------------------------------------
_CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}
_VALUE_OPS = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
              "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
              "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8"}


def _pop_mark(stack, marks):
    if not marks:
        raise CheckpointError("malformed pickle: an opcode needs a MARK and there is none")
    items = stack[marks[-1]:]
    del stack[marks.pop():]
    return items


def _pop(stack, marks, count=1):
    # never below the innermost MARK, as pickle's own machine
    if len(stack) - (marks[-1] if marks else 0) < count:
        raise CheckpointError("malformed pickle: stack underflow")
    items = stack[len(stack) - count:]
    del stack[len(stack) - count:]
    return items


def _run_pickle(stream, persistent_load):
    """Interpret one pickle from ``stream`` and return its object."""
    stack, marks, memo = [], [], {}
    for opcode, arg, _ in pickletools.genops(stream):
        op = opcode.name
        if op in ("PROTO", "FRAME"):
            if op == "PROTO" and arg > 5:
                raise CheckpointError(f"pickle protocol {arg} is not supported")
        elif op in _CONSTANTS:
            stack.append(_CONSTANTS[op])
        elif op in _VALUE_OPS:
            stack.append(arg)
        elif op == "STOP":
            if len(stack) != 1 or marks:
                raise CheckpointError("malformed pickle: STOP with a stack of other than one object")
            return stack.pop()
        elif op == "MARK":
            marks.append(len(stack))
        elif op in ("EMPTY_DICT", "EMPTY_LIST", "EMPTY_TUPLE", "EMPTY_SET"):
            stack.append({"EMPTY_DICT": dict, "EMPTY_LIST": list, "EMPTY_TUPLE": tuple, "EMPTY_SET": set}[op]())
        elif op in ("TUPLE", "LIST", "FROZENSET"):
            items = _pop_mark(stack, marks)
            if op == "FROZENSET":
                items = map(_check_key, items)
            stack.append({"TUPLE": tuple, "LIST": list, "FROZENSET": frozenset}[op](items))
        elif op in ("TUPLE1", "TUPLE2", "TUPLE3"):
            stack.append(tuple(_pop(stack, marks, int(op[-1]))))
        elif op == "DICT":
            items = _pop_mark(stack, marks)
            stack.append(dict(zip(map(_check_key, items[::2]), items[1::2])))
        elif op in ("APPEND", "APPENDS"):
            items = _pop(stack, marks) if op == "APPEND" else _pop_mark(stack, marks)
            target = _pop(stack, marks)[0]
            if type(target) is not list:
                raise CheckpointError(f"malformed pickle: {op} on a {type(target).__name__}")
            target.extend(items)
            stack.append(target)
        elif op in ("SETITEM", "SETITEMS"):
            items = _pop(stack, marks, 2) if op == "SETITEM" else _pop_mark(stack, marks)
            target = _pop(stack, marks)[0]
            if type(target) not in (dict, collections.OrderedDict) or len(items) % 2:
                raise CheckpointError(f"malformed pickle: {op} on a {type(target).__name__}")
            for key, value in zip(items[::2], items[1::2]):
                target[_check_key(key)] = value
            stack.append(target)
        elif op == "ADDITEMS":
            items = _pop_mark(stack, marks)
            target = _pop(stack, marks)[0]
            if type(target) is not set:
                raise CheckpointError(f"malformed pickle: ADDITEMS on a {type(target).__name__}")
            target.update(map(_check_key, items))
            stack.append(target)
        elif op in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            if not stack:
                raise CheckpointError("malformed pickle: stack underflow")
            memo[len(memo) if op == "MEMOIZE" else arg] = stack[-1]
        elif op in ("GET", "BINGET", "LONG_BINGET"):
            if arg not in memo:
                raise CheckpointError(f"malformed pickle: memo entry {arg} read before it was written")
            stack.append(memo[arg])
        elif op == "POP":
            if len(stack) > (marks[-1] if marks else 0):
                _pop(stack, marks)
            else:
                _pop_mark(stack, marks)
        elif op == "POP_MARK":
            _pop_mark(stack, marks)
        elif op == "DUP":
            stack.append(_pop(stack, marks)[0])
            stack.append(stack[-1])
        elif op in ("GLOBAL", "STACK_GLOBAL"):
            module, name = arg.split(" ", 1) if op == "GLOBAL" else _pop(stack, marks, 2)
            stack.append(_find_global(module, name))
        elif op in ("REDUCE", "NEWOBJ"):
            function, args = _pop(stack, marks, 2)
            if not isinstance(function, _Callable) or (op == "NEWOBJ" and not function.is_class):
                what = repr(function) if isinstance(function, _Callable) else type(function).__name__
                raise CheckpointError(f"malformed pickle: {op} on {what} is not allowed")
            stack.append(function(args))
        elif op == "BUILD":
            state, = _pop(stack, marks)
            # an OrderedDict's attributes (a state dict's _metadata) are dropped; nothing else takes state
            if not stack or type(stack[-1]) is not collections.OrderedDict or type(state) not in (dict, tuple):
                raise CheckpointError(f"malformed pickle: BUILD on "
                                      f"{type(stack[-1]).__name__ if stack else 'nothing'} is not allowed")
        elif op in ("PERSID", "BINPERSID"):
            saved_id = arg if op == "PERSID" else _pop(stack, marks)[0]
            stack.append(persistent_load(saved_id))
        else:
            named = f" ({_short(arg)})" if arg is not None else ""
            raise CheckpointError(f"refused pickle opcode {op}{named}: it could build arbitrary objects "
                                  f"and is never used for tensors; nothing from the file was run")
    raise CheckpointError("malformed pickle: it ends before STOP")


# the two file formats -----------------------------------------------------------------------
def _storage_record(saved_id, length):
    if type(saved_id) is not tuple or len(saved_id) != length or saved_id[0] not in ("storage", b"storage"):
        raise CheckpointError(f"unexpected persistent id {_short(saved_id)}: expected a {length}-tuple "
                              f"('storage', type, key, location, numel{', view' if length == 6 else ''})")
    storage_type, key, _location, numel = saved_id[1:5]
    if not isinstance(storage_type, _StorageType):
        raise CheckpointError(f"storage type must be a torch storage class; got {_short(storage_type)}")
    if type(key) is not str:
        raise CheckpointError(f"storage key must be a string; got {_short(key)}")
    return storage_type.dtype, key, _check_int(f"the element count of storage {key!r}", numel)


def _load_zip(file, size):
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise CheckpointError(f"not a readable zip archive (truncated or corrupt?): {error}") from None
    with archive:
        names = {info.filename: info for info in archive.infolist()}
        pickles = [name for name in names if name.count("/") == 1 and name.endswith("/data.pkl")]
        if any(name.endswith("/constants.pkl") for name in names):
            raise CheckpointError("this is a TorchScript archive (torch.jit.save), not a torch.save checkpoint")
        if len(pickles) != 1:
            raise CheckpointError(f"expected one <prefix>/data.pkl record in the archive; found {len(pickles)}")
        prefix = pickles[0][:-len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = _read_member(archive, names[prefix + "byteorder"], 16, size).decode("ascii", "replace")
            if byteorder not in ("little", "big"):
                raise CheckpointError(f"unknown byte order {byteorder!r} in the archive")
        storages = {}

        def persistent_load(saved_id):
            dtype, key, numel = _storage_record(saved_id, 5)
            if key in storages:
                return storages[key]
            info = names.get(f"{prefix}data/{key}")
            if info is None:
                raise CheckpointError(f"storage {key!r} is missing from the archive")
            stored, _ = dtype.numpy()
            if numel * stored.itemsize != info.file_size:
                raise CheckpointError(f"storage {key!r} declares {numel} x {dtype!r} = {numel * stored.itemsize} "
                                      f"bytes; the archive holds {info.file_size}")
            _check_member_size(info, size)
            storage = _Storage(key, dtype, numel, byteorder)
            if info.compress_type == zipfile.ZIP_STORED:
                # straight from the file into the storage: zipfile's reader would copy it twice
                file.seek(_data_offset(file, info))
                storage.fill(_BoundedReader(file, file.tell() + info.file_size), info.CRC)
            else:
                with archive.open(info) as member:
                    storage.fill(member)
            storages[key] = storage
            return storage

        data = _read_member(archive, names[pickles[0]], None, size)
        return _run_pickle(io.BytesIO(data), persistent_load)


def _data_offset(file, info):
    """Where an uncompressed member's bytes start: after its local header, name and extra field."""
    file.seek(info.header_offset)
    header = file.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise CheckpointError(f"record {info.filename!r} has no valid local header (corrupt archive)")
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_length + extra_length


def _check_member_size(info, size):
    # an uncompressed member cannot be larger than the file; a compressed one is bounded by its declared size
    if info.compress_type == zipfile.ZIP_STORED and info.file_size > size:
        raise CheckpointError(f"record {info.filename!r} declares {info.file_size} bytes in a file of {size}")


def _read_member(archive, info, limit, size):
    if limit is not None and info.file_size > limit:
        raise CheckpointError(f"record {info.filename!r} is {info.file_size} bytes; expected at most {limit}")
    _check_member_size(info, size)
    return archive.read(info)


class _BoundedReader:
    """A file read up to position ``end`` only (a huge declared length allocates nothing)."""

    def __init__(self, file, end):
        self.file, self.end = file, end

    def tell(self):
        return self.file.tell()

    def left(self):
        return self.end - self.file.tell()

    def read(self, n=-1):
        return self.file.read(self.left() if n < 0 else min(n, self.left()))

    def readline(self):
        return self.file.readline(self.left())

    def readinto(self, buffer):
        buffer = memoryview(buffer)
        return self.file.readinto(buffer[:max(0, min(len(buffer), self.left()))])


def _load_legacy(file, size):
    reader = _BoundedReader(file, file.tell() + size)
    no_storages = _no_storages  # the header pickles hold no tensors
    if _run_pickle(reader, no_storages) != _LEGACY_MAGIC:
        raise CheckpointError("not a torch.save file: wrong magic number")
    protocol = _run_pickle(reader, no_storages)
    if protocol != _LEGACY_PROTOCOL:
        raise CheckpointError(f"legacy torch.save protocol {_short(protocol)} is not supported "
                              f"(expected {_LEGACY_PROTOCOL})")
    sys_info = _run_pickle(reader, no_storages)
    if type(sys_info) is not dict or sys_info.get("little_endian") is not True:
        raise CheckpointError("legacy checkpoints written on big-endian machines are not supported")
    storages = {}
    declared = [0]

    def persistent_load(saved_id):
        dtype, key, numel = _storage_record(saved_id, 6)
        storage = storages.get(key)
        if storage is None:
            nbytes = numel * dtype.numpy()[0].itemsize
            declared[0] += nbytes
            if declared[0] > size:  # checked before allocating: every storage's bytes are in the file
                raise CheckpointError(f"storage {key!r} declares {nbytes} bytes; with the others that is "
                                      f"more than the file's {size}")
            storage = storages[key] = _Storage(key, dtype, numel, "little")
        elif storage.dtype.numpy() != dtype.numpy() or storage.numel != numel:
            raise CheckpointError(f"storage {key!r} is declared twice with different types or sizes")
        if saved_id[5] is not None:
            raise CheckpointError(f"storage views (storage {key!r}) of torch < 0.4 are not supported")
        return storage

    result = _run_pickle(reader, persistent_load)
    keys = _run_pickle(reader, no_storages)
    if type(keys) is not list or any(type(k) is not str for k in keys) or len(set(keys)) != len(keys):
        raise CheckpointError("malformed legacy checkpoint: the storage key list is not a list of distinct strings")
    for key in keys:
        storage = storages.get(key)
        if storage is None:
            raise CheckpointError(f"the legacy checkpoint lists storage {key!r} that no tensor uses")
        header = reader.read(8)
        if len(header) != 8:
            raise CheckpointError(f"storage {key!r} is truncated: its header is missing")
        numel, = struct.unpack("<q", header)
        if numel != storage.numel:
            raise CheckpointError(f"storage {key!r}: the pickle declares {storage.numel} elements, "
                                  f"its record {numel}")
        storage.fill(reader)
    missing = sorted(key for key, storage in storages.items() if not storage.filled)
    if missing:
        raise CheckpointError(f"storage(s) {', '.join(map(repr, missing))} are missing from the file")
    return result


def _no_storages(saved_id):
    raise CheckpointError("malformed legacy checkpoint: a storage reference in its header")


def load_torch_checkpoint(path):
    """Read a ``torch.save`` file with NumPy only: no torch import, no pickled code run.

    Parameters
    ----------
    path : str, os.PathLike or binary file object (seekable)
        A file written by ``torch.save``, in the zip format (torch >= 1.6) or the
        legacy one (``_use_new_zipfile_serialization=False``).

    Returns
    -------
    object
        What was saved, with every tensor (and ``nn.Parameter``) as an ndarray of its
        shape and dtype: a state dict is an ``OrderedDict`` of arrays; an optimizer's
        state dict keeps its ``state``/``param_groups`` of ints, floats, bools, None,
        strings, tuples and lists. Tensors that shared a storage share memory; views,
        offsets and non-contiguous strides give views of that memory. ``torch.Size`` is
        read as a tuple and ``torch.device`` as its string.

    Raises
    ------
    CheckpointError
        For a file that is not a torch checkpoint, is truncated or corrupt, declares
        sizes its bytes do not hold, names any global other than torch's tensor and
        storage rebuild functions, storage types, dtypes, ``collections.OrderedDict``
        and a few builtins (the error names it; nothing is imported or run), or holds
        a dtype NumPy has no equivalent for (float8, quantized types, complex32).

    Notes
    -----
    bfloat16 tensors come back as float32: a bfloat16 is the high half of a float32,
    so the conversion is exact. Files written on big-endian machines are read in the
    zip format (their ``byteorder`` record says so) and refused in the legacy one.
    Memory is bounded by the sizes the file declares, each checked against the file
    before anything is allocated. Tensors on a GPU when saved are read to the CPU.
    """
    if isinstance(path, (str, bytes, os.PathLike)):
        with open(path, "rb") as file:
            return load_torch_checkpoint(file)
    file = path
    if not (hasattr(file, "read") and hasattr(file, "seek")):
        raise CheckpointError(f"path must be a file name or a seekable binary file; got {type(file).__name__}")
    start = file.seek(0, os.SEEK_CUR)
    size = file.seek(0, os.SEEK_END) - start
    file.seek(start)
    head = file.read(512)
    file.seek(start)
    try:
        if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
            return _load_zip(file, size)
        if head[257:262] == b"ustar":
            raise CheckpointError("the tar format of torch < 0.4 is not supported")
        if head[:1] == b"\x80":
            return _load_legacy(file, size)
        raise CheckpointError(f"not a torch.save file: it starts with {head[:8]!r}, "
                              f"neither a zip archive nor a pickle")
    except CheckpointError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, EOFError, OverflowError, struct.error,
            zipfile.BadZipFile, zlib.error, NotImplementedError, RecursionError, MemoryError, OSError) as error:
        # pickletools and zipfile report malformed bytes with these; say which file part failed
        raise CheckpointError(f"corrupt torch checkpoint: {type(error).__name__}: {error}") from None
