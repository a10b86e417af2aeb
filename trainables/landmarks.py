"""Landmark sets of the supported datasets, in the order every tensor uses."""

from __future__ import annotations

# Aariz symbol order of the official code (index 0-28); soft-tissue N, Pog use a backtick.
AARIZ_SYMBOLS: tuple[str, ...] = (
    "A", "ANS", "B", "Me", "N", "Or", "Pog", "PNS", "Pn", "R", "S", "Ar", "Co", "Gn", "Go",
    "Po", "LPM", "LIT", "LMT", "UPM", "UIA", "UIT", "UMT", "LIA", "Li", "Ls", "N`", "Pog`", "Sn",
)  # fmt: skip

AARIZ_TITLES: dict[str, str] = {
    "A": "A-point",
    "ANS": "Anterior Nasal Spine",
    "B": "B-point",
    "Me": "Menton",
    "N": "Nasion",
    "Or": "Orbitale",
    "Pog": "Pogonion",
    "PNS": "Posterior Nasal Spine",
    "Pn": "Pronasale",
    "R": "Ramus",
    "S": "Sella",
    "Ar": "Articulare",
    "Co": "Condylion",
    "Gn": "Gnathion",
    "Go": "Gonion",
    "Po": "Porion",
    "LPM": "Lower 2nd PM Cusp Tip",
    "LIT": "Lower Incisor Tip",
    "LMT": "Lower Molar Cusp Tip",
    "UPM": "Upper 2nd PM Cusp Tip",
    "UIA": "Upper Incisor Apex",
    "UIT": "Upper Incisor Tip",
    "UMT": "Upper Molar Cusp Tip",
    "LIA": "Lower Incisor Apex",
    "Li": "Labrale inferius",
    "Ls": "Labrale superius",
    "N`": "Soft Tissue Nasion",
    "Pog`": "Soft Tissue Pogonion",
    "Sn": "Subnasale",
}

# ISBI 2015 landmarks in annotation-file order (line 1-19). Symbols follow Aariz where the
# definition is the same point, so the two sets can be compared by name.
ISBI_SYMBOLS: tuple[str, ...] = (
    "S", "N", "Or", "Po", "A", "B", "Pog", "Me", "Gn", "Go",
    "LIT", "UIT", "Ls", "Li", "Sn", "Pog`", "PNS", "ANS", "Ar",
)  # fmt: skip

ISBI_TITLES: dict[str, str] = {
    "S": "Sella",
    "N": "Nasion",
    "Or": "Orbitale",
    "Po": "Porion",
    "A": "Subspinale (A-point)",
    "B": "Supramentale (B-point)",
    "Pog": "Pogonion",
    "Me": "Menton",
    "Gn": "Gnathion",
    "Go": "Gonion",
    "LIT": "Lower incisal incision",
    "UIT": "Upper incisal incision",
    "Ls": "Upper lip",
    "Li": "Lower lip",
    "Sn": "Subnasale",
    "Pog`": "Soft tissue pogonion",
    "PNS": "Posterior nasal spine",
    "ANS": "Anterior nasal spine",
    "Ar": "Articulare",
}
