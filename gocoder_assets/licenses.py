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
