"""送温暖统计表收集、校验与汇总流水线 (the 送温暖 statistics consolidation pipeline)."""

__version__ = "0.1.0"
