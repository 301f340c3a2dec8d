module kiln.dev/plugin

go 1.23
