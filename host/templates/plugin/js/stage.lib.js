// __NAME__'s logic, without host imports, so `node --test` runs it.

/** Lines in `text`, not counting blank ones. */
export function countLines(text) {
  return text.split('\n').filter((line) => line.trim() !== '').length;
}
