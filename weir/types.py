"""Spark SQL data types, as `pyspark.sql.types` names them::

    from weir.types import StructType, StructField, StringType, DoubleType

(The classes live in weir.tables.types.)"""

from weir.tables.types import *  # noqa: F403
from weir.tables.types import __all__ as __all__
