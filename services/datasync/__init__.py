"""Backstop datasync.

Department feeds (医保局, 应急管理局, 民政局, 教育局): batches, validation, matching to households, the delivery calendar.
"""
