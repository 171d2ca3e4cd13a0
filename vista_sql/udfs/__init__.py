"""What runs inside Spark workers: the CNN roster in Keras, image decoding, partial inference."""
