"""The plain Python runner: what the sandbox runs for a Python sample without test code (io
tests, or none), as `python -I -S -c <this file's text> [site]` in the sample's workdir.

One interpreter per run: it compiles main.py itself, and a syntax error ends the run with
COMPILE_EXIT and a compiler-style message before any of the program ran (the verifier reports
a compile error); otherwise main.py runs as `__main__`, as `python -I main.py` would run it.
The interpreter starts with -S, so the program sees the standard library only unless the
problem asked for site-packages (`site` among the arguments). Standard library only here too:
the sandbox sees no halo_forge package.
"""

import sys

COMPILE_EXIT = 85  # the same code as the judge's (pyjudge_main.py)


def _compile(path):
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
        raise SystemExit(COMPILE_EXIT) from None
    except (ValueError, MemoryError, RecursionError) as e:
        print(f"{path}: error: {type(e).__name__}: {e}", file=sys.stderr)
        raise SystemExit(COMPILE_EXIT) from None
    for w in caught:  # what `python -W always::SyntaxWarning` shows, and nothing else
        if issubclass(w.category, SyntaxWarning):
                print(f"{path}:{w.lineno}: {w.category.__name__}: {w.message}", file=sys.stderr)
    return code


def _main():
    code = _compile("main.py")
    _site_builtins()  # noqa: F821 - pysite_prelude.py's, put before this file by pyjudge.py
    if "site" in sys.argv[1:]:
        import site
        site.main()
    module = type(sys)("__main__")
    module.__file__ = "main.py"
    sys.modules["__main__"] = module
    sys.argv[:] = ["main.py"]
    exec(code, module.__dict__)


if __name__ == "__main__":
    _main()
