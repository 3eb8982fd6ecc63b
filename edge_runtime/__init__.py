"""Device-side siamface: numpy, OpenCV and a TFLite interpreter, nothing else.

This package is also the home of the morphable-model maths shared by every stage,
because it is the one layer allowed to have no heavy dependencies.
"""
