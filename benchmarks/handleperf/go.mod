module idres/handleperf

go 1.26.0
