"""The text of a document sent for the knowledge base: plain text, Markdown or PDF (pypdf).

Anything else, a PDF that pypdf cannot read (damaged, encrypted) or a "text" file that is
binary becomes ``FileRefused`` with one line that says which.
"""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import PurePath

import pypdf
from pypdf.errors import PyPdfError

from core.errors import FileRefused
from core.i18n import N_

log = logging.getLogger("ollabot.documents")

TEXT_SUFFIXES = frozenset({".txt", ".text", ".md", ".markdown"})
TEXT_TYPES = frozenset({"text/plain", "text/markdown", "text/x-markdown"})
PDF_TYPE = "application/pdf"
UNSUPPORTED = N_("I can read text, Markdown and PDF files; {name} is none of these.")
DAMAGED_PDF = N_("{name} is not a PDF I can read: it may be damaged or encrypted.")
NOT_TEXT = N_("{name} does not look like a text file.")


class DocumentText:
    """Implements ``DocumentReader``; PDFs are parsed in a worker thread."""

    async def text(self, data: bytes, name: str, mime: str) -> str:
        kind = kind_of(name, mime)
        if kind == "pdf":
            return await asyncio.to_thread(pdf_text, data, name)
        if kind == "text":
            return plain_text(data, name)
        raise FileRefused(UNSUPPORTED, name=name)


def kind_of(name: str, mime: str) -> str:
    """``pdf``, ``text`` or ``""`` (not read), by the platform's type, else the name."""
    mime = mime.split(";", 1)[0].strip().lower()
    suffix = PurePath(name).suffix.lower()
    if mime == PDF_TYPE or suffix == ".pdf":
        return "pdf"
    if mime in TEXT_TYPES or suffix in TEXT_SUFFIXES:
        return "text"
    return ""


def plain_text(data: bytes, name: str) -> str:
    if b"\0" in data:
        raise FileRefused(NOT_TEXT, name=name)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def pdf_text(data: bytes, name: str) -> str:
    """Every page's text, pages apart as paragraphs."""
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise FileRefused(DAMAGED_PDF, name=name)
        return "\n\n".join(page.extract_text() or "" for page in reader.pages)
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as error:
        log.warning("unreadable PDF %r: %r", name, error)
        raise FileRefused(DAMAGED_PDF, name=name) from error
