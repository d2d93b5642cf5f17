"""Helpers shared by the test modules (plain functions, classes and constants; fixtures live in conftests).

No test module imports another test module: whatever two of them need goes here.
"""
