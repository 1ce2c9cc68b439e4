"""Data: pinned corpora, documents split by document, the BPE tokenizer, and the token store.

`forgetlaw.data.mixture` (D-limited views, the injection stream) is imported from its module.
"""

from forgetlaw.data.build import build_data, build_root
from forgetlaw.data.config import DEFAULT_DOMAINS, DataConfig
from forgetlaw.data.store import DataStore, open_data

__all__ = ["DEFAULT_DOMAINS", "DataConfig", "DataStore", "build_data", "build_root", "open_data"]
