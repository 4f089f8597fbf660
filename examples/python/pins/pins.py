"""What `pins` checks, without host imports: parsing pip requirements
files and judging each requirement."""

import re
from dataclasses import dataclass

# A name as pip writes it (PEP 508), then the rest of the requirement.
NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*(.*)$")
COMMIT = re.compile(r"@[0-9a-f]{40}(#|$)")


@dataclass
class Requirement:
    """One requirement: its first line in the file, the package (or the
    URL for a direct reference), the version spec and the options after
    it."""

    line: int
    name: str
    spec: str
    hashes: int
    editable: bool
    url: str | None


@dataclass
class Problem:
    rule: str
    severity: str
    message: str


def parse(text):
    """The requirements in a requirements file's `text`. Comments, blank
    lines and pip options (`-r`, `--index-url`, ...) are skipped; lines
    continued with a backslash are joined."""
    requirements = []
    logical, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if not logical:
            start = number
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        requirement = _requirement(logical.strip(), start)
        if requirement is not None:
            requirements.append(requirement)
        logical = ""
    return requirements


def _requirement(line, number):
    if not line:
        return None
    editable = False
    if line.startswith(("-e ", "--editable ")):
        editable = True
        line = line.split(None, 1)[1].strip()
    elif line.startswith("-"):
        return None  # -r, -c, --index-url and other options
    hashes = len(re.findall(r"--hash[= ]\S+", line))
    line = re.sub(r"\s--\S+([= ]\S+)?", "", " " + line).strip()
    line = line.split(";", 1)[0].strip()  # environment markers
    if "://" in line or line.startswith(("git+", "hg+", "svn+", "bzr+", ".", "/")):
        url = line.split(" @ ", 1)[-1].strip()
        name = line.split(" @ ", 1)[0].strip() if " @ " in line else url
        return Requirement(number, name, "", hashes, editable, url)
    match = NAME.match(line)
    if match is None:
        return Requirement(number, line, "", hashes, editable, None)
    return Requirement(number, match.group(1), match.group(3).strip(), hashes, editable, None)


def judge(requirement, require_hashes=False):
    """What is wrong with one requirement, if anything."""
    problems = []
    if requirement.editable:
        problems.append(
            Problem(
                "editable",
                "medium",
                f"`{requirement.name}` is installed editable (-e): "
                "what it installs is whatever the checkout holds",
            )
        )
    if requirement.url is not None:
        vcs = requirement.url.split("+", 1)[0] in ("git", "hg", "svn", "bzr")
        if vcs and not COMMIT.search(requirement.url):
            problems.append(
                Problem(
                    "vcs-not-pinned",
                    "high",
                    f"`{requirement.name}` comes from a repository without a commit; "
                    "add @<40-character commit sha>",
                )
            )
    elif not re.fullmatch(r"===?\s*[^,*\s]+", requirement.spec):
        spec = requirement.spec or "any version"
        problems.append(
            Problem(
                "unpinned",
                "high",
                f"`{requirement.name}` is not pinned ({spec}); write `{requirement.name}==VERSION`",
            )
        )
    if require_hashes and requirement.hashes == 0 and not requirement.editable:
        problems.append(
            Problem(
                "no-hash",
                "medium",
                f"`{requirement.name}` has no --hash, so pip cannot check what it downloads",
            )
        )
    return problems
