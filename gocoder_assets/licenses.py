"""Which licenses the corpus may contain: OSI-approved SPDX ids, copyleft included.

GitHub reports some licenses by their older SPDX ids (``GPL-3.0`` rather than
``GPL-3.0-only``), so both spellings are listed. ``NOASSERTION`` (GitHub: "a license file
we could not identify") and a missing license are never allowed.
"""

from __future__ import annotations

PERMISSIVE = frozenset(
    {"MIT", "MIT-0", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause", "0BSD", "ISC", "Zlib", "BSL-1.0",
     "Unlicense", "UPL-1.0", "NCSA", "PostgreSQL", "MS-PL", "Artistic-2.0", "AFL-3.0", "ECL-2.0",
     "LPPL-1.3c", "MulanPSL-2.0", "OFL-1.1"}
)  # fmt: skip
COPYLEFT = frozenset(
    {"MPL-2.0", "EPL-1.0", "EPL-2.0", "LGPL-2.1", "LGPL-2.1-only", "LGPL-2.1-or-later", "LGPL-3.0",
     "LGPL-3.0-only", "LGPL-3.0-or-later", "GPL-2.0", "GPL-2.0-only", "GPL-2.0-or-later", "GPL-3.0",
     "GPL-3.0-only", "GPL-3.0-or-later", "AGPL-3.0", "AGPL-3.0-only", "AGPL-3.0-or-later", "EUPL-1.2",
     "OSL-3.0", "MS-RL", "EUPL-1.1"}
)  # fmt: skip
DEFAULT_ALLOWLIST = PERMISSIVE | COPYLEFT


def is_allowed(spdx_id: str | None, allowlist: frozenset[str] = DEFAULT_ALLOWLIST) -> bool:
    return bool(spdx_id) and spdx_id != "NOASSERTION" and spdx_id in allowlist


def license_key(spdx_id: str | None) -> str | None:
    """GitHub's license key for an SPDX id (``BSD-3-Clause`` → ``bsd-3-clause``, ``GPL-3.0-only`` →
    ``gpl-3.0``), so records from local sources carry the same provenance field GitHub's do."""
    if not spdx_id or spdx_id == "NOASSERTION":
        return None
    return spdx_id.lower().removesuffix("-only").removesuffix("-or-later")


# What redistributing a model trained on a license's code asks of you, in one line each, for the model
# card's license table. A summary to point people at the right obligations, not legal advice; ids not
# listed fall back to their family's line (``obligations``).
_NOTICE = "Keep the copyright notice and license text with copies or substantial portions (attribution)."
_WEAK = "File-level copyleft: modified files of the work stay under this license, with source available."
_STRONG = (
    "Strong copyleft: a distributed derivative work must be offered under the same license, with source (share-alike)."
)
OBLIGATIONS: dict[str, str] = {
    "MIT": _NOTICE,
    "ISC": _NOTICE,
    "BSD-2-Clause": _NOTICE,
    "BSD-3-Clause": _NOTICE + " Contributors' names may not be used to endorse derived products.",
    "Apache-2.0": _NOTICE + " Also keep the NOTICE file, state changes made, and note the patent grant.",
    "Zlib": "Do not misrepresent the origin; mark altered versions; keep the notice in source copies.",
    "BSL-1.0": "Keep the license text in source copies (not required in compiled binaries).",
    "MIT-0": "No conditions (attribution not required).",
    "0BSD": "No conditions (attribution not required).",
    "Unlicense": "Public-domain dedication: no conditions.",
    "MPL-2.0": _WEAK,
    "EPL-1.0": _WEAK,
    "EPL-2.0": _WEAK,
    "LGPL-2.1-only": "Library copyleft: modifications of the library stay LGPL with source; users may relink.",
    "LGPL-3.0-only": "Library copyleft: modifications of the library stay LGPL with source; users may relink.",
    "GPL-2.0-only": _STRONG,
    "GPL-3.0-only": _STRONG + " Includes a patent license and installation information for user products.",
    "AGPL-3.0-only": _STRONG + " Offering it over a network counts as distribution (source to network users).",
    "EUPL-1.2": _STRONG + " Compatible-license exception listed in the EUPL appendix.",
}


def license_family(spdx_id: str | None) -> str:
    """``permissive``, ``copyleft`` or ``unknown`` (not on the allowlist: should never reach training)."""
    if spdx_id in PERMISSIVE:
        return "permissive"
    if spdx_id in COPYLEFT:
        return "copyleft"
    return "unknown"


def obligations(spdx_id: str | None) -> str:
    """The one-line summary of what ``spdx_id`` requires (``OBLIGATIONS``; GitHub's older ids and
    ``-or-later`` variants map to their ``-only`` entry, otherwise the family's line)."""
    if spdx_id in OBLIGATIONS:
        return OBLIGATIONS[spdx_id]
    base = (spdx_id or "").removesuffix("-or-later").removesuffix("-only")
    if f"{base}-only" in OBLIGATIONS:
        return OBLIGATIONS[f"{base}-only"]
    family = license_family(spdx_id)
    if family == "permissive":
        return _NOTICE
    if family == "copyleft":
        return "Copyleft: derivative works share the license and make source available; read the license."
    return "Not on the allowlist: find out before distributing."
