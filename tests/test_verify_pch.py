"""The precompiled <bits/stdc++.h>: built once, rebuilt for a new compiler, and actually used."""

from __future__ import annotations

import msgspec
import pytest

from halo_forge.verify.config import VerifierConfig
from halo_forge.verify.pch import PchCache, wants_pch
from halo_forge.verify.runner import verify_many
from halo_forge.verify.toolchains import resolve_toolchain
from halo_forge.verify.types import VerifySample

# A warning keeps the compiler's output in the verdict, so -H's include tree can be read there.
PROGRAM = "#include <bits/stdc++.h>\nusing namespace std;\nint main(){int unused; vector<int> v{1}; cout << v[0] << endl;}\n"


@pytest.fixture(scope="module")
def pch_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("pch-cache")


# Sandboxed compiles get a private /tmp, so a PCH they read must live elsewhere: the default
# cache directory (~/.cache/halo-forge), which also spares later runs the build.
DEFAULT_CACHE = VerifierConfig().cache_dir


def _config(cache_dir, *, pch=True):
    base = VerifierConfig()
    # -H lists the headers the compiler opens; "! <file>.gch" means it read the PCH instead.
    cpp = msgspec.structs.replace(base.gcc_cpp, flags=base.gcc_cpp.flags + ("-H",))
    return msgspec.structs.replace(base, gcc_cpp=cpp, pch=pch, cache=False, cache_dir=str(cache_dir))


def test_verifier_compiles_with_the_pch():
    [with_pch] = verify_many([VerifySample(id="a", language="cpp", code=PROGRAM)], config=_config(DEFAULT_CACHE))
    assert with_pch.status == "ran" and with_pch.warnings
    assert "! " in with_pch.output and "stdc++.h.gch" in with_pch.output, with_pch.output
    [without] = verify_many([VerifySample(id="b", language="cpp", code=PROGRAM)],
                            config=_config(DEFAULT_CACHE, pch=False))
    assert without.status == "ran" and ".gch" not in without.output


@pytest.mark.slow
def test_pch_rebuilt_when_the_compiler_changes(pch_dir):
    cache = PchCache(pch_dir)
    tc = resolve_toolchain("cpp", _config(pch_dir).gcc_cpp)
    first = cache.build(tc)
    upgraded = msgspec.structs.replace(tc, identity=tc.identity + " (upgraded)")
    assert cache.ready_dir(upgraded) is None  # a new compiler does not reuse the old PCH
    second = cache.build(upgraded)
    assert second != first and (second / "bits" / "stdc++.h.gch").is_file()
    assert not first.exists()  # the stale one is removed


def test_pch_only_for_gcc_cpp(pch_dir):
    import anyio

    cache = PchCache(pch_dir)
    c_tc = resolve_toolchain("c", VerifierConfig().gcc_c)
    assert anyio.run(cache.include_dir, c_tc) is None


def test_wants_pch_only_when_first_include():
    assert wants_pch("// solution\n#include <bits/stdc++.h>\nint main(){}")
    assert wants_pch("#pragma GCC optimize(\"O3\")\n#include<bits/stdc++.h>\n")
    assert not wants_pch("#include <iostream>\n#include <bits/stdc++.h>\n")
    assert not wants_pch("int x;\n#include <bits/stdc++.h>\n")
