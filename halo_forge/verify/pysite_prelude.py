"""What `site` would put in builtins, for the sandbox's Python programs started with -S.

Not a module: pyjudge.py puts this text before the judge's (pyjudge_main.py) and the plain
runner's (pyrun_main.py) own, so each stays one self-contained program (the sandbox sees no
halo_forge package) while this is written once.
"""

import builtins
import sys


def _site_builtins():
    """What `site` puts in builtins (exit, quit, help, copyright, credits, license), without
    site itself: -S leaves them out, and honest programs end with exit()."""
    try:
        import _sitebuiltins
    except ImportError:
        return
    builtins.exit = _sitebuiltins.Quitter("exit", "Ctrl-D (i.e. EOF)")
    builtins.quit = _sitebuiltins.Quitter("quit", "Ctrl-D (i.e. EOF)")
    builtins.help = _sitebuiltins._Helper()
    builtins.copyright = _Later(lambda: _sitebuiltins._Printer("copyright", sys.copyright))
    builtins.credits = _Later(lambda: _sitebuiltins._Printer("credits", "See https://www.python.org/."))
    builtins.license = _Later(lambda: _sitebuiltins._Printer("license", "See https://www.python.org/psf/license/"))


class _Later:
    """One of site's printers (copyright, credits, license), made when first shown: making one
    imports `os`, a quarter of a cold interpreter's start, for what programs hardly ever use."""

    def __init__(self, make):
        self._make, self._made = make, None

    def _printer(self):
        if self._made is None:
            self._made = self._make()
        return self._made

    def __repr__(self):
        return repr(self._printer())

    def __call__(self):
        return self._printer()()
