import unittest

import app


class Ready(unittest.TestCase):
    def test_only_ready_instances_count(self):
        instances = [("v1", True), ("v2", False), ("v1", True)]
        self.assertEqual(app.ready_by_version(instances), [("v1", 2)])
