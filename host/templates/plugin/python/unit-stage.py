import unittest

import app


class CountLines(unittest.TestCase):
    def test_blank_lines_do_not_count(self):
        self.assertEqual(app.count_lines("def main():\n\n    run()\n"), 2)
        self.assertEqual(app.count_lines(""), 0)
