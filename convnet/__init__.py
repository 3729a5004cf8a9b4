"""convnet: the small package behind convert.py, main.py, detect.py and verify_torch_GPU.py.

Follow one image through it:
  idx.py        read and validate MNIST IDX files (.gz or raw)
  download.py   fetch missing IDX files from mirrors, verified by checksum
  convert.py    IDX -> PNG files plus train.txt / test.txt
  data.py       image lists -> a cached uint8 tensor; batches by indexing
  model.py      the CNNs and the one checkpoint format main.py and detect.py share
  train.py      the training loop (single process or torchrun/DDP)
  preprocess.py photos and scans -> 28x28 MNIST-style input (scikit-image)
  predict.py    detect.py's work: find the images, prepare them in parallel, label in batches
  plots.py      the run folder's pictures: curves, confusion matrix, misclassified images
  gpu_check.py  verify_torch_GPU.py's report: versions, devices, CPU-checked computations
  cli.py        one-line errors, atomic writes
"""
