"""The first document of a bundle file exactly as opm v1.73.0 cuts it out.

opm reads every manifest and metadata file with `decodeFileFS` (pkg/registry/decode.go): one
`Decode` of apimachinery's `NewYAMLOrJSONDecoder`, i.e. the first chunk of its `YAMLReader`. That
reader splits on lines starting with `---` and returns the first NON-EMPTY chunk, where any bytes
count, a comment line or a blank line included. So a file that opens with `# comment` then
`---` then the CSV hands opm the comment alone: the file decodes to nothing, opm skips it and a
bundle whose CSV was there is refused ("no csv in bundle"). PyYAML's first document would be the
CSV. Cutting the chunk the same way first makes both readers see one document.
"""

from __future__ import annotations

SEPARATOR = "---"


class SeparatorError(ValueError):
    """A `---` line followed by something other than a comment (apimachinery's YAMLSyntaxError)."""


def first_chunk(text: str) -> str:
    """The text of the first document apimachinery's YAMLReader returns ('' when there is none).

    JSON input (first non-blank character `{`) is returned whole: the JSON decoder reads it.
    """
    if text.lstrip().startswith("{"):
        return text
    kept: list[str] = []
    for line in text.splitlines(keepends=True):
        if line.startswith(SEPARATOR):
            rest = line[len(SEPARATOR):].strip()
            if rest and not rest.startswith("#"):
                raise SeparatorError(f"invalid Yaml document separator: {rest}")
            if kept:
                break
            continue
        kept.append(line)
    return "".join(kept)
