"""Build hook: ship the card templates kept in ``cards/`` inside the package, as ``fulora_data/templates``.

The templates live in the repository's top-level ``cards/`` folder (one place for people to edit them).
A wheel copies them to ``fulora_data/templates/*.md``, where ``fulora_data.cards.template`` reads them with
``importlib.resources``; an editable install or a source checkout reads ``cards/`` itself. Everything else
about the build is in ``setup.cfg``.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithCards(build_py):
    """``build_py`` that also copies ``cards/*.md`` into the built package."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install reads cards/ in place
            return
        target = Path(self.build_lib, "fulora_data", "templates")
        self.mkpath(str(target))
        for card in sorted(Path(__file__).resolve().parent.joinpath("cards").glob("*.md")):
            self.copy_file(str(card), str(target / card.name))


setup(cmdclass={"build_py": BuildPyWithCards})
