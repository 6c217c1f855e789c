"""Streamlit pieces the pages share (data and store once per server, run pickers, the live run panel).

Kept out of ``pages/``, which holds pages only; like every page, nothing here holds training logic.
"""
