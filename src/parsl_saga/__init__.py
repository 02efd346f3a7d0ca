"""parsl-saga's own code: glue and proof around the forked Parsl and SAGA."""
