import unittest

import app


class Difference(unittest.TestCase):
    def test_differences_name_the_first_line(self):
        self.assertIsNone(app.difference("a\nb\n", "a\nb\n"))
        self.assertEqual(app.difference("a\nb\n", "a\nc\n"), "differs from line 2")
        self.assertEqual(app.difference("a\n", "a\nb\n"), "differs from line 2")
        self.assertEqual(app.difference("a\n", None), "missing")
