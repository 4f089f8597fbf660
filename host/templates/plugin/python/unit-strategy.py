import unittest

import app


class Plan(unittest.TestCase):
    def test_each_step_is_a_weight_a_wait_and_a_check(self):
        steps = [20, 100]
        self.assertEqual(
            [app.plan(steps, False, n) for n in range(8)],
            [
                ("deploy",),
                ("weight", 20),
                ("wait",),
                ("analyze",),
                ("weight", 100),
                ("wait",),
                ("analyze",),
                ("promote",),
            ],
        )

    def test_a_first_release_goes_straight_to_all_traffic(self):
        self.assertEqual(app.plan([20, 100], True, 1), ("weight", 100))
        self.assertEqual(app.plan([20, 100], True, 4), ("promote",))

    def test_durations(self):
        self.assertEqual(app.duration_ms("3s"), 3000)
        self.assertEqual(app.duration_ms("250ms"), 250)
