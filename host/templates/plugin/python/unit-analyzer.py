import unittest

import app


class Markers(unittest.TestCase):
    def test_markers_are_found_by_line(self):
        text = "x = 1\n# TODO: name this\ny = 2  # FIXME\n"
        self.assertEqual(app.markers(text), [(2, "TODO"), (3, "FIXME")])
        self.assertEqual(app.markers("clean\n"), [])
