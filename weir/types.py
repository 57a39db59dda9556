"""Spark SQL data types, as `pyspark.sql.types` names them::

from weir.types import StructType, StructField, StringType, DoubleType
"""

from weir.tables.types import (
    ArrayType,
    BooleanType,
    DataType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

__all__ = [
    "ArrayType",
    "BooleanType",
    "DataType",
    "DateType",
    "DecimalType",
    "DoubleType",
    "FloatType",
    "IntegerType",
    "LongType",
    "StringType",
    "StructField",
    "StructType",
    "TimestampType",
]
