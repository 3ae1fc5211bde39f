/*
 * ember tiny test guest: a freestanding x86-64 ELF of a few KB that boots both
 *  - in QEMU `-M microvm -kernel tiny.elf` through the PVH ELF note
 *    (XEN_ELFNOTE_PHYS32_ENTRY = 18): entry pvh_entry, 32-bit protected mode, paging
 *    off, %ebx = hvm_start_info (unused). It builds identity page tables for the
 *    first GB and switches to long mode itself; recent Firecracker (PVH support)
 *    takes the same path;
 *  - in Firecracker's Linux 64-bit boot (ELF without/ignoring the note): entry
 *    e_entry = entry64, long mode, first GB identity mapped, %rsi = boot_params
 *    (unused), GDT and stack set by the VMM.
 * It then prints `tiny counter=<n> marker=<16 hex digits>` on the 8250 at 0x3f8
 * (polled THR) about every 2^29 TSC ticks (~0.2 s at 2.6 GHz), forever. The counter
 * and the marker (rdrand if available, else rdtsc, taken once when the marker in RAM
 * is still 0) live in RAM, so a snapshot/restore continues the count and keeps the
 * marker. No interrupts are used (IF stays clear).
 */
	.set COM1, 0x3f8
	.set PERIOD, 0x20000000		/* TSC ticks between lines */
	.set MSR_EFER, 0xc0000080

	.section .note.Xen, "a"
	.balign 4
	.long 4				/* namesz: "Xen\0" */
	.long 8				/* descsz: 64-bit value, as Linux emits it */
	.long 18			/* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.balign 4
	.quad pvh_entry

	.text
/* ---- 32-bit PVH entry ------------------------------------------------------------ */
	.code32
	.globl pvh_entry
pvh_entry:
	cli
	cld
	movl $stack_top, %esp
	/* Identity map of the first GB with 2 MB pages: PML4[0] -> PDPT[0] -> PD. */
	movl $pdpt, %eax
	orl $3, %eax
	movl %eax, pml4
	movl $pd, %eax
	orl $3, %eax
	movl %eax, pdpt
	xorl %ecx, %ecx
1:	movl %ecx, %eax
	shll $21, %eax
	orl $0x83, %eax			/* present, writable, 2 MB page */
	movl %eax, pd(,%ecx,8)
	movl $0, pd+4(,%ecx,8)
	incl %ecx
	cmpl $512, %ecx
	jb 1b
	movl $pml4, %eax
	movl %eax, %cr3
	movl %cr4, %eax
	orl $0x20, %eax			/* PAE */
	movl %eax, %cr4
	movl $MSR_EFER, %ecx
	rdmsr
	orl $0x100, %eax		/* LME */
	wrmsr
	lgdt gdt_desc
	movl %cr0, %eax
	orl $0x80000001, %eax		/* PG | PE */
	movl %eax, %cr0
	ljmp $0x08, $long_mode

/* ---- 64-bit code ------------------------------------------------------------------ */
	.code64
long_mode:
	movl $0x10, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl %eax, %fs
	movl %eax, %gs
	jmp main64

	.globl entry64			/* e_entry: Firecracker's 64-bit Linux boot */
entry64:
	cli
	cld
main64:
	movabsq $stack_top, %rsp
	movq marker(%rip), %rax
	testq %rax, %rax
	jnz .Lloop			/* marker set: not a first boot (never happens
					   after a restore: execution resumes in the loop) */
	call serial_init
	call random64
	testq %rax, %rax
	jnz 2f
	incq %rax			/* 0 means "unset" */
2:	movq %rax, marker(%rip)

.Lloop:
	rdtsc
	shlq $32, %rdx
	orq %rdx, %rax
	movq %rax, %r12			/* start of this period */
	incq counter(%rip)
	leaq msg_counter(%rip), %rsi
	call puts
	movq counter(%rip), %rax
	call putdec
	leaq msg_marker(%rip), %rsi
	call puts
	movq marker(%rip), %rax
	call puthex16
	movb $'\n', %al
	call putc
.Lwait:
	pause
	rdtsc
	shlq $32, %rdx
	orq %rdx, %rax
	subq %r12, %rax
	cmpq $PERIOD, %rax
	jb .Lwait
	jmp .Lloop

/* random64: %rax = rdrand (if CPUID.1:ECX.RDRAND and it succeeds) else the TSC. */
random64:
	pushq %rbx
	movl $1, %eax
	cpuid
	btl $30, %ecx
	jnc 3f
	movl $16, %ecx
1:	rdrand %rax
	jc 4f
	loop 1b
3:	rdtsc
	shlq $32, %rdx
	orq %rdx, %rax
4:	popq %rbx
	ret

/* serial_init: 115200 8N1, FIFO on, interrupts off. */
serial_init:
	movw $COM1+1, %dx
	xorb %al, %al
	outb %al, %dx			/* IER = 0 */
	movw $COM1+3, %dx
	movb $0x80, %al
	outb %al, %dx			/* DLAB */
	movw $COM1, %dx
	movb $1, %al
	outb %al, %dx			/* divisor 1 */
	movw $COM1+1, %dx
	xorb %al, %al
	outb %al, %dx
	movw $COM1+3, %dx
	movb $3, %al
	outb %al, %dx			/* 8N1 */
	movw $COM1+2, %dx
	movb $0xc7, %al
	outb %al, %dx			/* FIFO */
	movw $COM1+4, %dx
	movb $3, %al
	outb %al, %dx			/* DTR | RTS */
	ret

/* putc: %al to the THR once LSR.THRE is set (bounded wait: no UART must not hang). */
putc:
	movb %al, %r8b
	movl $100000, %ecx
	movw $COM1+5, %dx
1:	inb %dx, %al
	testb $0x20, %al
	jnz 2f
	pause
	loop 1b
2:	movw $COM1, %dx
	movb %r8b, %al
	outb %al, %dx
	ret

/* puts: NUL-terminated string at %rsi. */
puts:
	movb (%rsi), %al
	testb %al, %al
	jz 1f
	call putc
	incq %rsi
	jmp puts
1:	ret

/* putdec: %rax in decimal. */
putdec:
	leaq numbuf+24(%rip), %rsi
	movb $0, (%rsi)
	movq $10, %rcx
1:	xorl %edx, %edx
	divq %rcx
	addb $'0', %dl
	decq %rsi
	movb %dl, (%rsi)
	testq %rax, %rax
	jnz 1b
	jmp puts

/* puthex16: %rax as 16 lower-case hex digits. */
puthex16:
	movq %rax, %r9
	movl $16, %r10d
1:	rolq $4, %r9
	movl %r9d, %eax
	andl $15, %eax
	leaq hexdigits(%rip), %rsi
	movb (%rsi,%rax), %al
	call putc
	decl %r10d
	jnz 1b
	ret

	.section .rodata
msg_counter:	.asciz "tiny counter="
msg_marker:	.asciz " marker="
hexdigits:	.ascii "0123456789abcdef"
	.balign 8
gdt:	.quad 0
	.quad 0x00af9a000000ffff	/* 0x08: 64-bit code */
	.quad 0x00cf92000000ffff	/* 0x10: data */
gdt_desc:
	.word gdt_desc - gdt - 1
	.long gdt

	.bss
	.balign 4096
pml4:	.skip 4096
pdpt:	.skip 4096
pd:	.skip 4096
	.balign 16
	.skip 4096
stack_top:
counter: .quad 0
marker:	.quad 0
numbuf:	.skip 32
