"""送温暖统计表收集、校验与汇总流水线 (the 送温暖 statistics consolidation pipeline).

`from pipeline import Campaign` is the library's face (see pipeline/api.py); it is imported on first use,
so that `pipeline --help` does not pay for what the commands load.
"""

from typing import Any

from pipeline.model import VERSION as __version__

__all__ = ["Campaign", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Campaign":
        from pipeline.api import Campaign

        return Campaign
    raise AttributeError(name)
