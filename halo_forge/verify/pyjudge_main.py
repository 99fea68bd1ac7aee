"""The Python judge: the program the sandbox runs for a Python sample with test code.

Run by `python -I -S -c <boot>` in the sample's workdir, which holds main.py (the solution) and
nothing else: the boot reads this file's compiled code from stdin (compiled once per interpreter
by the host, pyjudge.py) and runs it; the rest of stdin is the solution's bytecode (framed by its
length; empty when the host left main.py to the judge), one line with a one-time token, then the
test code (its source, or a NUL and its bytecode). Standard library only: the sandbox sees no
halo_forge package, and the solution sees site-packages only when the problem asks for them
(`site` among the arguments).

One interpreter per sample: without the host's bytecode the judge compiles main.py itself, before
anything else, and a syntax error ends the run with COMPILE_EXIT and a compiler-style message
(the solution never ran).

Two processes, one run:
- the judge (this process) makes itself non-dumpable, so no other process of the run can read
  its memory or descriptors through /proc (the run's processes have no capabilities, and
  seccomp denies ptrace and process_vm_readv);
- it forks the worker BEFORE it reads its stdin: the worker starts with nothing secret in its
  memory (no token, no tests), drops stdin, points its stdout at stderr, and only then loads
  main.py. The solution's code only ever runs in the worker;
- the judge reads the token and the test code, and runs the test code with every top-level
  name of the solution replaced by a proxy: calls go to the worker as messages, and results
  come back as JSON decoded HERE into exact builtin types (None, bool, int, float, complex,
  str, bytes, bytearray, list, tuple, dict, set, frozenset). An object that is not plain data
  stays in the worker and is seen here as an opaque handle: attribute access, calls, iteration,
  len and str go to the worker, and its own comparison methods are used only against another
  handle, never against the test's values;
- the verdict is the token line on the judge's stdout, which the worker never held, written
  only after the test code finished with the worker alive and every message well-formed.
"""

import builtins
import posix as os  # what `os` wraps here; `os` itself cost a run ~15% of its time to import
import sys

COMPILE_EXIT = 85  # main.py does not compile: a compile error, reported before any of it ran
ASSERT_EXIT = 86  # an assert of the test code failed
GUARD_EXIT = 88  # a defence fired: the judge's stdout names it after the token
FAULT_EXIT = 87  # the judge could not set itself up (infrastructure, not the program)
EXITED = "exited before its tests finished"
NOT_PLAIN = "a result that is not plain data was compared with the test's value"
_MAX_MESSAGE = 256 << 20


# -- framing and plain data (both processes) -------------------------------------------------

# JSON through CPython's own C codec (_json), which `json` wraps: importing `json` pulls in
# `re`, `enum` and `functools`, and cost a run twice the interpreter's own start.
_CONSTANTS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def _no_json(obj):
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


try:
    import _json

    _dumps_c = _json.make_encoder(None, _no_json, _json.encode_basestring_ascii, None, ":", ",", False, False, True)

    def _dumps(obj):
        return "".join(_dumps_c(obj, 0))

    class _Context:
        """What _json's scanner reads its options from, once (a class per process cost each
        forked run a type's making and copy-on-write faults)."""

        strict, object_pairs_hook, parse_float, parse_int = True, None, float, int
        parse_constant = staticmethod(_CONSTANTS.__getitem__)

    def _scanner(hook):
        context = _Context()
        context.object_hook = hook
        scan = _json.make_scanner(context)

        def loads(data):
            text = data.decode("utf-8")
            try:
                value, end = scan(text, 0)
            except StopIteration as exc:
                raise ValueError(f"malformed JSON at {exc.value}") from None
            if end != len(text):
                raise ValueError("extra data after the JSON value")
            return value
        return loads
except (ImportError, AttributeError):  # another implementation: the json package
    import json

    def _dumps(obj):
        return json.dumps(obj, separators=(",", ":"))

    def _scanner(hook):
        return lambda data: json.loads(data, object_hook=hook)


def _send(fd, obj):
    data = _dumps(obj).encode()
    data = len(data).to_bytes(4, "big") + data
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_exact(fd, n):
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


_ATOMS = {type(None), bool, int, float, str}


def _encode(obj, other):
    """obj as JSON-able data; containers other than lists are tagged one-key objects.
    `other(obj)` encodes what is not plain data (or raises)."""
    t = type(obj)
    if t in _ATOMS:
        return obj
    if t is list:
        if all(type(x) in _ATOMS for x in obj):
            return obj
        return [_encode(x, other) for x in obj]
    if t is tuple:
        return {"t": [_encode(x, other) for x in obj]}
    if t is dict:
        return {"d": [[_encode(k, other), _encode(v, other)] for k, v in obj.items()]}
    if t is set:
        return {"s": [_encode(x, other) for x in obj]}
    if t is frozenset:
        return {"f": [_encode(x, other) for x in obj]}
    if t is bytes:
        return {"b": obj.hex()}
    if t is bytearray:
        return {"y": obj.hex()}
    if t is complex:
        return {"c": [obj.real, obj.imag]}
    return other(obj)


def _base_value(obj):
    """A subclass of a builtin type (namedtuple, IntEnum, Counter, OrderedDict) as an exact
    value of its base type, read through the base type's own methods (an override of __eq__,
    __iter__ or __getitem__ in the subclass plays no part); None when obj is no such thing."""
    if isinstance(obj, int):
        return int.__int__(obj) if not isinstance(obj, bool) else bool(int.__int__(obj))
    if isinstance(obj, float):
        return float.__float__(obj)
    if isinstance(obj, str):
        return str.__str__(obj)
    if isinstance(obj, complex):
        return complex(float.__float__(obj.real), float.__float__(obj.imag))
    if isinstance(obj, (bytes, bytearray)):
        data = bytes(memoryview(obj))
        return data if isinstance(obj, bytes) else bytearray(data)
    if isinstance(obj, tuple):
        return tuple(tuple.__getitem__(obj, i) for i in range(tuple.__len__(obj)))
    if isinstance(obj, list):
        return [list.__getitem__(obj, i) for i in range(list.__len__(obj))]
    if isinstance(obj, dict):
        return {k: dict.__getitem__(obj, k) for k in list(dict.__iter__(obj))}
    if isinstance(obj, frozenset):
        return frozenset(frozenset.__iter__(obj))
    if isinstance(obj, set):
        return set(set.__iter__(obj))
    return None


class _Violation(BaseException):
    """The worker broke the protocol. BaseException: test code that catches Exception does not
    swallow it (and the judge remembers it anyway)."""


class _Gone(BaseException):
    """The solution ended its process (or asked to) while the tests still needed it."""


def _decode_hook(handle):
    def hook(d):
        if len(d) != 1:
            raise _Violation("a tagged value with more than one key")
        (tag, v), = d.items()
        if tag in ("t", "s", "f", "d", "c", "r") and type(v) is not list:
            raise _Violation(f"tag {tag!r} without a list")
        if tag == "t":
            return tuple(v)
        if tag == "s":
            return set(v)
        if tag == "f":
            return frozenset(v)
        if tag == "d":
            if not all(type(kv) is list and len(kv) == 2 for kv in v):
                raise _Violation("a dict entry that is not a pair")
            return dict(v)
        if tag in ("b", "y"):
            if type(v) is not str:
                raise _Violation("bytes that are not hex text")
            return bytes.fromhex(v) if tag == "b" else bytearray.fromhex(v)
        if tag == "c":
            if len(v) != 2 or not all(type(x) in (int, float) for x in v):
                raise _Violation("a complex number that is not two numbers")
            return complex(v[0], v[1])
        if tag == "r":
            if len(v) != 2 or type(v[0]) is not int or type(v[1]) is not str:
                raise _Violation("a malformed object handle")
            return handle(v[0], v[1])
        raise _Violation(f"unknown tag {tag!r}")
    return hook


def _no_int_digit_limit():
    # Large results cross as decimal text; the limit guards parsers of untrusted text, and the
    # judge bounds message size itself.
    setter = getattr(sys, "set_int_max_str_digits", None)
    if setter is not None:
        setter(0)


# -- the worker: the solution's process -------------------------------------------------------

def _worker(req_r, resp_w, code):
    # Nothing of the judge's stdin or stdout reaches the solution: both are replaced before
    # any of its code runs. print() goes to the run's stderr.
    if type(code) is bytes:  # the host's bytecode: loaded here, where it runs
        import marshal
        code = marshal.loads(code)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    _site_builtins()  # noqa: F821 - pysite_prelude.py's, put before this file by pyjudge.py
    if "site" in sys.argv[1:]:  # the problem asked for site-packages (numpy & co)
        try:
            import site
            site.main()
        except Exception:
            pass
    _no_int_digit_limit()
    objs, ids = [], {}

    def register(obj):
        value = _base_value(obj)
        if value is not None:
            return _encode(value, register)
        key = id(obj)
        index = ids.get(key)
        if index is None or objs[index] is not obj:
            index = ids[key] = len(objs)
            objs.append(obj)
        return {"r": [index, type(obj).__name__]}

    def resolve(index, _name):
        if not 0 <= index < len(objs):
            raise ValueError("unknown object handle")
        return objs[index]

    loads = _scanner(_decode_hook(resolve))

    def reply_error(exc):
        try:
            message = str(exc)
        except BaseException:
            message = "<unprintable>"
        name = type(exc).__name__
        is_builtin = getattr(builtins, name, None) is type(exc)
        _send(resp_w, ["x", name, message[:2000], is_builtin])

    module_type = type(sys)  # types.ModuleType, without importing `types`
    module = module_type("__main__")
    module.__file__ = "main.py"
    sys.modules["__main__"] = module
    scope = module.__dict__
    try:
        exec(code, scope)
    except Exception as exc:
        import traceback
        traceback.print_exc()
        reply_error(exc)
        os._exit(0)
    except BaseException as exc:
        _send(resp_w, ["exit", f"{type(exc).__name__} while loading the solution"])
        os._exit(0)
    names = []
    for name, value in list(scope.items()):
        if name.startswith("__") and name.endswith("__"):
            continue
        if isinstance(value, module_type):
            modname = value.__name__
            if name in (modname, modname.split(".")[0], modname.rsplit(".", 1)[-1]):
                names.append([name, "m", modname])
                continue
        names.append([name, "v", _encode(value, register)])
    # Globals the solution reads but does not define (MBPP's test_setup_code defines some
    # for it): the judge sends them over when the test code has them as plain data.
    wanted, codes = set(), [code]
    while codes:
        c = codes.pop()
        wanted.update(c.co_names)
        codes.extend(k for k in c.co_consts if isinstance(k, type(code)))
    wanted = sorted(n for n in wanted if n not in scope and n not in builtins.__dict__)
    _send(resp_w, ["ready", names, wanted])

    compare = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "lt": lambda a, b: a < b,
               "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b}
    while True:
        header = _read_exact(req_r, 4)
        if header is None:
            os._exit(0)
        req = loads(_read_exact(req_r, int.from_bytes(header, "big")))
        op, writeback = req[0], []
        if op == "setg":
            scope[req[1]] = req[2]
            _send(resp_w, ["v", None, []])
            continue
        try:
            target = resolve(req[1], "")
            if op == "call":
                args, kwargs = req[2], dict(req[3])
                result = target(*args, **kwargs)
                for i, a in enumerate(args):
                    if type(a) in (list, dict, set, bytearray):
                        writeback.append([i, _encode(a, register)])
                for k, a in kwargs.items():
                    if type(a) in (list, dict, set, bytearray):
                        writeback.append([k, _encode(a, register)])
            elif op == "get":
                result = getattr(target, req[2])
            elif op == "set":
                setattr(target, req[2], req[3])
                result = None
            elif op == "iter":
                result = iter(target)
            elif op == "next":
                result = next(target)
            elif op == "len":
                result = len(target)
            elif op == "bool":
                result = bool(target)
            elif op == "item":
                result = target[req[2]]
            elif op == "str":
                result = str(target)
            elif op == "repr":
                result = repr(target)
            elif op == "hash":
                result = hash(target)
            elif op in compare:
                result = compare[op](target, req[2])
            else:
                raise ValueError(f"unknown request {op!r}")
            _send(resp_w, ["v", _encode(result, register), writeback])
        except Exception as exc:
            reply_error(exc)
        except BaseException as exc:
            _send(resp_w, ["exit", f"{type(exc).__name__} raised by the solution"])
            os._exit(0)


# -- the judge ---------------------------------------------------------------------------------

class _SolutionError(Exception):
    """An exception of a type the judge does not have (one the solution defined)."""


class _Judge:
    def __init__(self, req_w, resp_r):
        self.req_w, self.resp_r = req_w, resp_r
        self.fault = ""  # sticky: set once the worker left or broke the protocol
        self.noted = ""  # names the defence when the tests then fail
        self.guard = ""
        self.loads = _scanner(_decode_hook(lambda index, name: _Remote(self, index, name)))
        self.scope, self.wanted, self.sent = {}, [], {}

    def fail(self, kind, message):
        if not self.fault:
            self.fault, self.guard = message, (EXITED if kind is _Gone else message)
        raise kind(message)

    def encode_arg(self, obj):
        def other(x):
            if type(x) is _Remote and x._judge is self:
                return {"r": [x._index, ""]}
            value = _base_value(x)
            if value is not None:
                return _encode(value, other)
            raise TypeError(f"the test passes a {type(x).__name__} to the solution; only plain data and the "
                            f"solution's own objects can cross to the solution's process")
        return _encode(obj, other)

    def request(self, message):
        """Sends `message` (None: only receives, as for the worker's first message) and
        returns the reply; raises the solution's exception, or _Gone/_Violation."""
        if self.fault:
            raise (_Gone if self.guard == EXITED else _Violation)(self.fault)
        if message is not None and self.wanted and message[0] != "setg":
            self.share_globals()
        try:
            if message is not None:
                _send(self.req_w, message)
            header = _read_exact(self.resp_r, 4)
            size = int.from_bytes(header, "big") if header else 0
            if size > _MAX_MESSAGE:
                self.fail(_Violation, "an oversized reply from the solution's process")
            data = _read_exact(self.resp_r, size) if header else None
        except OSError:
            data = None
        if data is None:
            self.fail(_Gone, "the solution's process ended before the tests finished")
        try:
            reply = self.loads(data)
        except _Violation as exc:
            self.fail(_Violation, f"a malformed reply from the solution's process: {exc}")
        except (ValueError, TypeError, RecursionError) as exc:
            self.fail(_Violation, f"a malformed reply from the solution's process: {type(exc).__name__}")
        if type(reply) is not list or not reply or reply[0] not in ("v", "x", "exit", "ready"):
            self.fail(_Violation, "a malformed reply from the solution's process")
        if reply[0] == "exit":
            self.fail(_Gone, f"the solution tried to end its process ({str(reply[1:2])[:200]})")
        if reply[0] == "x":
            if len(reply) != 4 or type(reply[1]) is not str or type(reply[2]) is not str:
                self.fail(_Violation, "a malformed error reply from the solution's process")
            _, name, text, is_builtin = reply
            exc_type = getattr(builtins, name, None) if is_builtin is True else None
            if exc_type is StopIteration and (message or [""])[0] != "next":
                # Only the iteration protocol may end the test's loops: a call that raises
                # StopIteration would silently cut short map()/filter() under all() or list().
                exc_type = RuntimeError
                text = f"the solution raised StopIteration: {text}"
            if isinstance(exc_type, type) and issubclass(exc_type, Exception):
                try:
                    error = exc_type(text) if text else exc_type()
                except Exception:
                    error = _SolutionError(f"{name}: {text}")
            else:
                error = _SolutionError(f"{name}: {text}")
            raise error
        return reply

    def share_globals(self):
        for name in self.wanted:
            value = self.scope.get(name, self)
            if value is self or self.sent.get(name, self) is value:
                continue
            self.sent[name] = value
            try:
                wire = self.encode_arg(value)
            except (TypeError, ValueError, RecursionError):
                continue  # a function or object of the test's: it stays here
            self.value(["setg", name, wire])

    def value(self, message):
        reply = self.request(message)
        if reply[0] != "v" or len(reply) != 3 or type(reply[2]) is not list:
            self.fail(_Violation, "a malformed reply from the solution's process")
        return reply[1], reply[2]

    def call(self, remote, args, kwargs):
        wire_args = [self.encode_arg(a) for a in args]
        wire_kwargs = [[k, self.encode_arg(v)] for k, v in kwargs.items()]
        result, writeback = self.value(["call", remote._index, wire_args, wire_kwargs])
        # Functions that change their arguments in place: the test sees the change.
        for entry in writeback:
            if type(entry) is not list or len(entry) != 2:
                self.fail(_Violation, "a malformed argument update")
            where, new = entry
            old = args[where] if type(where) is int and 0 <= where < len(args) else kwargs.get(where) if type(where) is str else None
            if type(old) is not type(new) or type(old) not in (list, dict, set, bytearray):
                continue
            if type(old) in (list, bytearray):
                old[:] = new
            else:
                old.clear()
                old.update(new)
        return result


class _Remote:
    """An object that lives in the solution's process."""

    __slots__ = ("_judge", "_index", "_type")

    def __init__(self, judge, index, type_name):
        object.__setattr__(self, "_judge", judge)
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_type", type_name)

    def _op(self, op, *extra):
        return self._judge.value([op, self._index, *extra])[0]

    def _typed(self, op, want, *extra):
        result = self._op(op, *extra)
        if type(result) is not want:
            raise TypeError(f"{op} of a solution object returned {type(result).__name__}, not {want.__name__}")
        return result

    def __call__(self, *args, **kwargs):
        return self._judge.call(self, args, kwargs)

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._op("get", name)

    def __setattr__(self, name, value):
        self._op("set", name, self._judge.encode_arg(value))

    def __iter__(self):
        return self._op("iter")

    def __next__(self):
        return self._op("next")

    def __len__(self):
        n = self._typed("len", int)
        if n < 0:
            raise ValueError("len() of a solution object is negative")
        return n

    def __bool__(self):
        return self._typed("bool", bool)

    def __getitem__(self, key):
        return self._op("item", self._judge.encode_arg(key))

    def __str__(self):
        return self._typed("str", str)

    def __repr__(self):
        return f"<solution {self._type} object #{self._index}>"

    def __hash__(self):
        return self._typed("hash", int)

    # `x in handle` iterates the handle here and compares plain items with the test's ==:
    # the solution's own __contains__ is never asked whether the test's value is in it.
    __contains__ = None

    def _compare(self, op, other):
        # Only two of the solution's own objects are compared by its own methods (the test
        # built the expected object with the solution's class, so it trusts that class);
        # against the test's plain values a handle equals nothing.
        if type(other) is not _Remote or other._judge is not self._judge:
            self._judge.noted = NOT_PLAIN
            return NotImplemented
        if other._index == self._index and op in ("eq", "ne"):
            return op == "eq"
        return self._typed(op, bool, {"r": [other._index, ""]})

    def __eq__(self, other):
        return self._compare("eq", other)

    def __ne__(self, other):
        return self._compare("ne", other)

    def __lt__(self, other):
        return self._compare("lt", other)

    def __le__(self, other):
        return self._compare("le", other)

    def __gt__(self, other):
        return self._compare("gt", other)

    def __ge__(self, other):
        return self._compare("ge", other)


def _contains(self, item):
    return any(x is item or x == item for x in self)


_Remote.__contains__ = _contains


def _stdlib_module(name):
    top = name.split(".")[0]
    names = getattr(sys, "stdlib_module_names", None)
    if names is None or top not in names:
        return None
    import importlib
    try:
        return importlib.import_module(name)
    except Exception:
        return None


def _prctl():
    """libc's prctl through _ctypes itself: `import ctypes` defines its whole type zoo and
    cost every run more than a third of the interpreter's start."""
    try:
        import _ctypes

        class _Int(_ctypes._SimpleCData):
            _type_ = "i"

        function = type("_Prctl", (_ctypes.CFuncPtr,), {
            "_flags_": _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO, "_restype_": _Int})
        return function(_ctypes.dlsym(_ctypes.dlopen(None), "prctl")), _ctypes.get_errno
    except (ImportError, AttributeError, OSError, TypeError):
        import ctypes
        return ctypes.CDLL(None, use_errno=True).prctl, ctypes.get_errno


_PRCTL = []  # (prctl, get_errno) once made: the warm template makes it before any run (prepare)


def _nondumpable():
    """After this, no process of the run can open this one's /proc memory or descriptors."""
    if not _PRCTL:
        _PRCTL.append(_prctl())
    prctl, get_errno = _PRCTL[0]
    pr_set_dumpable, pr_get_dumpable = 4, 3
    if prctl(pr_set_dumpable, 0, 0, 0, 0) != 0 or prctl(pr_get_dumpable, 0, 0, 0, 0) != 0:
        raise OSError(get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def compile_solution(path="main.py"):
    """main.py's code object, its SyntaxWarnings printed like a compiler's; on a syntax error
    the message goes to stderr and the run ends with COMPILE_EXIT. (Shared, as text, with the
    plain runner pyrun_main.py, which the sandbox runs for samples without test code.)"""
    import warnings
    try:
        with open(path, "rb") as f:
            source = f.read()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code = compile(source, path, "exec", dont_inherit=True)
    except SyntaxError as e:
        print(f"{e.filename}:{e.lineno}:{e.offset}: error: {e.msg}", file=sys.stderr)
        if e.text:
            print("    " + e.text.rstrip(), file=sys.stderr)
        _finish(COMPILE_EXIT)
    except (ValueError, MemoryError, RecursionError) as e:
        print(f"{path}: error: {type(e).__name__}: {e}", file=sys.stderr)
        _finish(COMPILE_EXIT)
    for w in caught:  # what `python -W always::SyntaxWarning` shows, and nothing else
        if issubclass(w.category, SyntaxWarning):
                print(f"{path}:{w.lineno}: {w.category.__name__}: {w.message}", file=sys.stderr)
    return code


def _finish(code, line=""):
    sys.stdout.flush()
    sys.stderr.flush()
    if line:
        os.write(1, ("\n" + line + "\n").encode())
    os._exit(code)


def _host_code():
    """The solution's bytecode the host put ahead of the token (b"": compile main.py here),
    read with os.read to its last byte and no further: the worker is forked next."""
    size = _read_exact(0, 8)
    code = _read_exact(0, int.from_bytes(size, "big")) if size is not None else None
    if code is None:
        print("python judge: stdin ended before the solution's bytecode", file=sys.stderr)
        _finish(FAULT_EXIT)
    return code


def main():
    code = _host_code() or compile_solution()
    try:
        _nondumpable()
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
    except Exception as exc:
        print(f"python judge: cannot start: {type(exc).__name__}: {exc}", file=sys.stderr)
        _finish(FAULT_EXIT)
    if pid == 0:
        try:
            os.close(req_w)
            os.close(resp_r)
            _worker(req_r, resp_w, code)
        finally:
            os._exit(0)
    os.close(req_r)
    os.close(resp_w)
    # The worker exists and holds nothing secret: now the secrets come in.
    data = sys.stdin.buffer.read()
    token, _, test_source = data.partition(b"\n")
    token = token.decode().strip()
    _no_int_digit_limit()
    judge = _Judge(req_w, resp_r)
    status = 0
    try:
        if test_source[:1] == b"\0":  # compiled by the host (source never holds a NUL)
            import marshal
            tests = marshal.loads(memoryview(test_source)[1:])
        else:
            tests = compile(test_source, "<tests>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        print(f"python judge: the test code does not compile: {exc}", file=sys.stderr)
        status = 1
    try:
        if status == 0:
            status = _run(judge, tests)
    finally:
        # Not waited for: the worker cannot write the judge's stdout (its own is stderr), and
        # the run's init reaps it (and counts its CPU) when this process has ended.
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    if judge.fault:
        _finish(GUARD_EXIT, f"{token} guard {judge.guard}")
    if status == ASSERT_EXIT and judge.noted:
        _finish(GUARD_EXIT, f"{token} guard {judge.noted}")
    _finish(status, f"{token} pass" if status == 0 else "")


def _run(judge, tests):
    scope = {"__name__": "__main__", "__builtins__": builtins}
    try:
        reply = judge.request(None)  # the worker's first message: what the solution defines
        if reply[0] != "ready" or len(reply) != 3 or type(reply[1]) is not list or type(reply[2]) is not list:
            judge.fail(_Violation, "a malformed first message from the solution's process")
        judge.scope = scope
        judge.wanted = [n for n in reply[2] if type(n) is str]
        for entry in reply[1]:
            if type(entry) is not list or len(entry) != 3 or type(entry[0]) is not str:
                judge.fail(_Violation, "a malformed name from the solution's process")
            name, kind, payload = entry
            if name in builtins.__dict__:
                continue  # the test's sorted/abs/all stay the real ones, whatever the solution binds
            if kind == "m" and type(payload) is str:
                module = _stdlib_module(payload)
                if module is not None:
                    scope[name] = module
            elif kind == "v":
                scope[name] = payload
    except (_Gone, _Violation):
        return 1
    except Exception as exc:  # the solution's own traceback is on stderr already
        print(f"python judge: the solution failed while loading: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    try:
        exec(tests, scope)
    except AssertionError:
        import traceback
        traceback.print_exc()
        return ASSERT_EXIT
    except (_Gone, _Violation):
        return 1
    except SystemExit:
        return 1  # the test code's own exit: never a pass, never one of the judge's codes
    except BaseException:
        import traceback
        traceback.print_exc()
        return 1
    return 0


def prepare():
    """Called once by the warm template (pywarm_main.py), whose forks then call main(): what
    every run would otherwise make or import for itself. Nothing of any run is read here."""
    _PRCTL.append(_prctl())
    import traceback  # noqa: F401  (the judge's and the worker's error paths)
    import warnings  # noqa: F401  (compile_solution)


if __name__ == "__main__":
    main()
