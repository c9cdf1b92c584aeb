/* Input of gen-sys.sh: the C declarations src/sys.rs is generated from. */
#include <stdlib.h>
#include <ext2fs/ext2fs.h>
#include <ext2fs/ext2_err.h>
#include <et/com_err.h>
