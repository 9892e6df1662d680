"""Helpers that tests, benchmarks and the fuzzer share.

Wire strategies, the DAG DSL, the consensus simulator, Yuma's float reference. Product code may import these;
nothing here imports tests/.
"""
