module kiln.dev/plugins/normalize

go 1.23

require kiln.dev/plugin v0.0.0

replace kiln.dev/plugin => ../../../sdk/go
