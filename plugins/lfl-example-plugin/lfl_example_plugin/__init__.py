"""An example lfl plugin: a data set (`breast_cancer`) and a model (`grid_cnn`).

`facts` holds what lfl reads without torch (the entry points name its objects); `data` and `model`
hold the loader and the builder the facts name, imported only where data is loaded or a model built.
"""
