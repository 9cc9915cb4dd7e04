"""Wrong implementations and correct alternatives of the exercises: test data for the checks.

    ch01.py, ch02.py       written from the exercise text; tests/test_check_blind_spots.py runs them
    heldout.py             a second set, written after the checks were fixed against the first
    heldout2.py            a third set, written blind (without reading the checks or the other sets)
    blind_ch03_05.py       the blind set of chapters 03-05 (issue 31), reported once before any fix

`python -m benchmarks.check_mutants` measures how many each set's checks catch and name.
"""
