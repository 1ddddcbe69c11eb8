"""Text that the report renders as code, in Markdown and HTML alike."""
from __future__ import annotations


class Code(str):
    """Inline code (file and method names) in a paragraph or table cell."""
