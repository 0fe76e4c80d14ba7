"""A lexical look at SPARQL text: which form it has and which keywords it uses.

The RDF store must refuse updates and federated queries (``SERVICE``) before Oxigraph
runs anything, and pyoxigraph has no parse-only call. Checking keywords needs no
grammar, only tokens: strings, IRIs, comments, variables, prefixed names and language
tags are skipped, so a ``SERVICE`` inside a literal or an IRI, ``?service`` or
``ex:service`` are not mistaken for the keyword. Syntax is still Oxigraph's to judge.

Imports: standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# One alternative per token kind; the first that matches at a position wins, so the
# long string forms come before the short ones.
_TOKEN = re.compile(
    r"""
      (?P<ws>\s+)
    | (?P<comment>\#[^\n\r]*)
    | (?P<string>\"\"\"(?:[^"\\]|\\.|"(?!""))*\"\"\"
        | '''(?:[^'\\]|\\.|'(?!''))*'''
        | "(?:[^"\\\n\r]|\\.)*"
        | '(?:[^'\\\n\r]|\\.)*')
    | (?P<iri><[^<>"{}|^`\\\x00-\x20]*>)
    | (?P<var>[?$][\w\u00B7\u00C0-\U000EFFFF]+)
    | (?P<langtag>@[A-Za-z]+(?:-[A-Za-z0-9]+)*)
    | (?P<name>[A-Za-z_\u00C0-\U000EFFFF][\w\-.\u00B7\u00C0-\U000EFFFF]*
        (?::[^\s{}()\[\];,<>"'\#=!&|*/+^]*)?
      | :[^\s{}()\[\];,<>"'\#=!&|*/+^]*)
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)

QUERY_FORMS = frozenset({"SELECT", "ASK", "CONSTRUCT", "DESCRIBE"})
#: The first keyword of every SPARQL 1.1 Update operation.
UPDATE_FORMS = frozenset(
    {"INSERT", "DELETE", "LOAD", "CLEAR", "DROP", "CREATE", "ADD", "MOVE", "COPY", "WITH"}
)
_PROLOGUE = frozenset({"BASE", "PREFIX"})


@dataclass(frozen=True, slots=True)
class QueryShape:
    """What the keywords of a SPARQL text say about it."""

    form: str | None  # SELECT, ASK, CONSTRUCT, DESCRIBE, an update keyword, or None
    keywords: frozenset[str]  # every bare keyword, upper case

    @property
    def is_update(self) -> bool:
        return self.form in UPDATE_FORMS

    @property
    def uses_service(self) -> bool:
        return "SERVICE" in self.keywords

    @property
    def has_dataset_clause(self) -> bool:
        """True when the query names its own dataset (``FROM`` / ``FROM NAMED``)."""
        return "FROM" in self.keywords


def keywords(text: str) -> list[str]:
    """The bare words of ``text`` (keywords and function names) in order, upper case."""
    out = []
    for match in _TOKEN.finditer(text):
        word = match.group("name")
        if word and ":" not in word:
            out.append(word.rstrip(".").upper())
    return out


def inspect_query(text: str) -> QueryShape:
    """Find the form of a SPARQL query or update and the keywords it uses."""
    words = keywords(text)
    form = next((w for w in words if w not in _PROLOGUE), None)
    return QueryShape(form=form, keywords=frozenset(words))
