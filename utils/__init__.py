"""Shared code for the course: building notebooks, checking exercises, grading, Colab setup."""
