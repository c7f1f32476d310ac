package filemap

// mapNoReserve: FreeBSD counts anonymous pages when they are written anyway.
const mapNoReserve = 0
