// __NAME__'s logic, without host imports, so `node --test` runs it.

/** Severities, lowest first. */
export const SEVERITIES = ['info', 'low', 'medium', 'high', 'critical'];

/** FIXME is a known bug; TODO and XXX are notes. */
export const MARKERS = { TODO: 'low', FIXME: 'medium', XXX: 'low' };

/** { line, marker } for each marker in `text`, 1-based lines. */
export function markers(text) {
  const found = [];
  text.split('\n').forEach((content, i) => {
    for (const marker of Object.keys(MARKERS)) {
      if (content.includes(marker)) found.push({ line: i + 1, marker });
    }
  });
  return found;
}
